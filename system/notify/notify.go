// Package notify holds the live runtime's offline-notification senders for
// extlogic: a log notifier (slog) and a webhook notifier (JSON over HTTP POST).
// extlogic calls Notify from its state machine, which must never block, so
// the webhook notifier queues to a bounded worker pool and drops, counting,
// when the queue is full. Notifications are best effort (DESIGN.md promise 5
// excludes them): a dropped or failed one is counted and logged, never retried.
//
// This package does I/O and runs goroutines; it is not run by the simulator.
package notify

import (
	"log/slog"

	"github.com/zzim/zzim/system/extlogic"
)

// LogNotifier logs each notification. slog handlers writing to a local
// stream do not wait on the network, so it notifies synchronously.
type LogNotifier struct {
	Log *slog.Logger
}

// Notify logs n.
func (l LogNotifier) Notify(n extlogic.Notification) {
	log := l.Log
	if log == nil {
		log = slog.Default()
	}
	var conv string
	var seq uint64
	if len(n.Messages) > 0 {
		last := n.Messages[len(n.Messages)-1]
		conv, seq = last.GetConvId(), last.GetSeq()
	}
	log.Info("offline notification", "user", n.User, "messages", len(n.Messages)+n.Omitted, "last_conv", conv, "last_seq", seq)
}

var (
	_ extlogic.Notifier = LogNotifier{}
	_ extlogic.Notifier = (*WebhookNotifier)(nil)
)
