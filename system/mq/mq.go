// Package mq names zzim's queue subjects and durable consumers. The same
// names are used by the simulated queue (sim/) and NATS JetStream (live).
//
// Semantics every implementation gives (DESIGN.md "Dependency semantics"):
// at-least-once; a delivery not acked within AckWait is redelivered, possibly
// after later messages; publishes with the same msgID within DedupWindow are
// stored once. Consumers must be idempotent beyond the window.
package mq

import (
	"strings"
	"time"
)

// Subjects.
const (
	// OfflinePrefix + user: logic → extlogic, messages a user did not get by push.
	OfflinePrefix = "zzim.offline."
	// PlatformNotice: platform services → extlogic, one user's system notice.
	PlatformNotice = "zzim.platform.notice"
	// PlatformBroadcast: platform services → extlogic, a notice to every user.
	PlatformBroadcast = "zzim.platform.broadcast"
	// PlatformPrefix is what the HTTP platform API may publish under.
	PlatformPrefix = "zzim.platform."
	// EventSent: logic → extlogic, a message was stored (contact upkeep).
	EventSent = "zzim.events.sent"
)

// Streams and their subjects.
const (
	StreamOffline  = "ZZIM_OFFLINE"
	StreamPlatform = "ZZIM_PLATFORM"
	StreamEvents   = "ZZIM_EVENTS"
)

// Consumer is one durable consumer shared by every extlogic instance: each
// message goes to one of them, and a dead one's unacked messages are
// redelivered to the others after AckWait.
type Consumer struct {
	Name    string
	Stream  string
	Filter  string
	AckWait time.Duration
}

// Timing defaults.
const (
	DedupWindow    = 2 * time.Minute
	AckWaitDefault = 10 * time.Second
	// MaxDeliver bounds redeliveries of one message; past it the message goes
	// to the dead-letter log (never silently dropped).
	MaxDeliver = 20
)

// Consumers lists the durable consumers extlogic reads.
var Consumers = []Consumer{
	{Name: "extlogic-offline", Stream: StreamOffline, Filter: OfflinePrefix + ">", AckWait: AckWaitDefault},
	{Name: "extlogic-platform", Stream: StreamPlatform, Filter: PlatformPrefix + ">", AckWait: AckWaitDefault},
	{Name: "extlogic-events", Stream: StreamEvents, Filter: EventSent, AckWait: AckWaitDefault},
}

// Match reports whether subject matches a NATS filter with "*" and ">" tokens.
func Match(filter, subject string) bool {
	f := strings.Split(filter, ".")
	s := strings.Split(subject, ".")
	for i, tok := range f {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(f) == len(s)
}

// StreamOf names the stream a subject is stored in, or "" if none.
func StreamOf(subject string) string {
	switch {
	case strings.HasPrefix(subject, OfflinePrefix):
		return StreamOffline
	case strings.HasPrefix(subject, PlatformPrefix):
		return StreamPlatform
	case subject == EventSent:
		return StreamEvents
	}
	return ""
}
