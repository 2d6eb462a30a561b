package extlogic

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/system/mq"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// job is the work of one queue message. Several deliveries of the same
// message (a redelivery after AckWait while the first is still being worked
// on) share one job and are all answered when it ends.
type job struct {
	msgID        string
	deliveries   []node.DeliveryID
	numDelivered int // the highest NumDelivered seen: drives the nak backoff
	pending      int // outstanding steps (contact touches)
	failed       bool
	done         bool

	// broadcast fan-out state
	pushMsg      *wire.ChatMessage
	cursor       uint64
	scanAttempts int
}

func (x *ExtLogic) onDelivery(env node.Env, d node.Delivery) {
	x.stats.Deliveries++
	if d.NumDelivered > 1 {
		x.stats.Redeliveries++
	}
	if x.inflight >= x.cfg.InflightMax {
		x.stats.Overloaded++
		x.nak(env, d.ID, x.cfg.OverloadNakDelay)
		return
	}
	if j, ok := x.jobs[d.MsgID]; ok && d.MsgID != "" {
		// Same message already in progress here: answer both when it ends.
		x.stats.Joined++
		x.inflight++
		j.deliveries = append(j.deliveries, d.ID)
		j.numDelivered = max(j.numDelivered, d.NumDelivered)
		return
	}
	j := &job{msgID: d.MsgID, deliveries: []node.DeliveryID{d.ID}, numDelivered: d.NumDelivered}
	x.inflight++
	if d.MsgID != "" {
		x.jobs[d.MsgID] = j
	}
	if err := x.start(env, j, d); err != nil {
		// A payload no redelivery can fix: log and ack, never loop on it.
		x.stats.Poison++
		env.Log().Warn("extlogic: dropping poison delivery", "subject", d.Subject, "msg_id", d.MsgID, "err", err)
		x.complete(env, j, true)
	}
}

// start decodes the payload and begins the work for its subject.
func (x *ExtLogic) start(env node.Env, j *job, d node.Delivery) error {
	switch {
	case strings.HasPrefix(d.Subject, mq.OfflinePrefix):
		var w wire.OfflineWork
		if err := proto.Unmarshal(d.Data, &w); err != nil {
			return fmt.Errorf("offline work: %w", err)
		}
		return x.startOffline(env, j, &w)
	case d.Subject == mq.PlatformNotice:
		var n wire.PlatformNotice
		if err := proto.Unmarshal(d.Data, &n); err != nil {
			return fmt.Errorf("platform notice: %w", err)
		}
		return x.startNotice(env, j, &n)
	case d.Subject == mq.PlatformBroadcast:
		var b wire.PlatformBroadcast
		if err := proto.Unmarshal(d.Data, &b); err != nil {
			return fmt.Errorf("platform broadcast: %w", err)
		}
		return x.startBroadcast(env, j, &b)
	case d.Subject == mq.EventSent:
		var m wire.MessageSent
		if err := proto.Unmarshal(d.Data, &m); err != nil {
			return fmt.Errorf("message sent: %w", err)
		}
		return x.startTouch(env, j, &m)
	}
	return fmt.Errorf("unknown subject %q", d.Subject)
}

// complete answers every delivery of j: ack when ok, else nak with backoff.
func (x *ExtLogic) complete(env node.Env, j *job, ok bool) {
	if j.done {
		panic("extlogic: job completed twice")
	}
	j.done = true
	if j.msgID != "" && x.jobs[j.msgID] == j {
		delete(x.jobs, j.msgID)
	}
	x.inflight -= len(j.deliveries)
	delay := x.backoff(j.numDelivered)
	for _, id := range j.deliveries {
		if ok {
			x.stats.Acks++
			env.AckDelivery(id)
		} else {
			x.nak(env, id, delay)
		}
	}
}

func (x *ExtLogic) nak(env node.Env, id node.DeliveryID, delay time.Duration) {
	x.stats.Naks++
	env.NakDelivery(id, delay)
}

// backoff is NakDelayBase * 2^(numDelivered-1), capped at NakDelayMax.
func (x *ExtLogic) backoff(numDelivered int) time.Duration {
	d := x.cfg.NakDelayBase
	for i := 1; i < numDelivered && d < x.cfg.NakDelayMax; i++ {
		d *= 2
	}
	return min(d, x.cfg.NakDelayMax)
}
