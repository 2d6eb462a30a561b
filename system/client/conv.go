package client

import (
	"errors"
	"sort"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/wire"
)

// ErrConvsFull: ConvsMax conversations are known; no more are tracked.
var ErrConvsFull = errors.New("client: too many conversations")

// How a message reached the client.
const (
	viaPush = "push"
	viaSync = "sync"
	viaOwn  = "own" // the client's own send, held once acknowledged (no deliver op)
)

// conv is what the client holds of one conversation.
type conv struct {
	id string
	// held is the application's view in seq order. Without the no-gap-fill
	// bug it is contiguous: seqs first..last.
	held []*wire.ChatMessage
	last uint64 // highest held seq
	// buffer holds messages beyond last+1 until the gap is filled
	// (at most ReorderBufferMax).
	buffer map[uint64]buffered

	syncing    bool // a sync is outstanding
	syncAgain  bool // another sync is wanted once it answers
	syncQueued bool // waiting in Client.syncQueue
	syncRetry  bool // waiting in Client.syncRetry
	syncAfter  uint64

	readSeq uint64 // the highest read mark known (READ_ACK, CONV_LIST, own sends)
	unread  uint64 // last - readSeq, recomputed whenever either moves
}

type buffered struct {
	m   *wire.ChatMessage
	via string
}

// conv returns conv id's state, creating it; nil when ConvsMax are known.
func (c *Client) conv(id string) *conv {
	if cv, ok := c.convs[id]; ok {
		return cv
	}
	if len(c.convs) >= c.cfg.ConvsMax {
		return nil
	}
	cv := &conv{id: id, buffer: map[uint64]buffered{}}
	c.convs[id] = cv
	return cv
}

func (cv *conv) recompute() {
	if cv.last > cv.readSeq {
		cv.unread = cv.last - cv.readSeq
	} else {
		cv.unread = 0
	}
}

func (cv *conv) markRead(seq uint64) {
	if seq > cv.readSeq {
		cv.readSeq = seq
	}
	cv.recompute()
}

// accept runs one message through dedup and reordering: it is handed to the
// application when it is the next seq, buffered (and a gap fill started)
// when it is ahead, dropped when already held or buffered.
func (c *Client) accept(env Env, m *wire.ChatMessage, via string) {
	if !c.wellFormed(env, m) {
		return
	}
	cv := c.conv(m.ConvId)
	if cv == nil {
		c.stats.ConvsDropped++
		return
	}
	c.acceptIn(env, cv, m, via)
}

// wellFormed reports whether m names its seq and conversation; it logs m if not.
func (c *Client) wellFormed(env Env, m *wire.ChatMessage) bool {
	if m.Seq == 0 || m.ConvId == "" {
		env.Log().Warn("client: message without seq or conversation", "user", c.cfg.User, "conv", m.ConvId)
		return false
	}
	return true
}

// acceptIn is accept for a well-formed m of conversation cv.
func (c *Client) acceptIn(env Env, cv *conv, m *wire.ChatMessage, via string) {
	if c.cfg.Bugs.On(bugs.NoGapFill) {
		c.acceptNoGapFill(env, cv, m, via)
		return
	}
	if _, ok := cv.buffer[m.Seq]; ok || m.Seq <= cv.last {
		c.duplicate(env, cv, m, via)
		return
	}
	if m.Seq == cv.last+1 {
		c.hold(env, cv, m, via)
		c.flush(env, cv)
		return
	}
	if len(cv.buffer) >= c.cfg.ReorderBufferMax {
		// Dropping is safe: the gap-fill sync from last fetches it again.
		c.stats.ReorderDropped++
		c.requestSync(env, cv)
		return
	}
	cv.buffer[m.Seq] = buffered{m: m, via: via}
	if via == viaPush {
		// A gap: the missing pushes may be lost, fill it by sync. (An own
		// ack ahead of last is usually a push in flight; the periodic
		// conversation list shows it behind if not. A sync page is contiguous by contract.)
		c.requestSync(env, cv)
	}
}

// acceptNoGapFill is the no-gap-fill bug: whatever is not held yet goes to
// the application at once, in arrival order, and gaps are never filled.
func (c *Client) acceptNoGapFill(env Env, cv *conv, m *wire.ChatMessage, via string) {
	i := sort.Search(len(cv.held), func(i int) bool { return cv.held[i].Seq >= m.Seq })
	if i < len(cv.held) && cv.held[i].Seq == m.Seq {
		c.duplicate(env, cv, m, via)
		return
	}
	cv.held = append(cv.held, nil)
	copy(cv.held[i+1:], cv.held[i:])
	cv.held[i] = m
	if m.Seq > cv.last {
		cv.last = m.Seq
	}
	c.delivered(env, cv, m, via)
}

// hold appends m (seq last+1) to the application's view.
func (c *Client) hold(env Env, cv *conv, m *wire.ChatMessage, via string) {
	if len(cv.held) >= c.cfg.HeldMax {
		cv.held[0] = nil
		cv.held = cv.held[1:]
		c.stats.HeldForgotten++
	}
	cv.held = append(cv.held, m)
	cv.last = m.Seq
	c.delivered(env, cv, m, via)
}

func (c *Client) delivered(env Env, cv *conv, m *wire.ChatMessage, via string) {
	cv.recompute()
	if via == viaOwn {
		return // the application wrote it: nothing is delivered
	}
	if via == viaSync {
		c.stats.GapFills++
	}
	c.recordDeliver(env, m, via)
	if c.cfg.OnDeliver != nil {
		c.cfg.OnDeliver(env, m, via)
	}
}

// flush hands over buffered successors of last.
func (c *Client) flush(env Env, cv *conv) {
	for {
		b, ok := cv.buffer[cv.last+1]
		if !ok {
			return
		}
		delete(cv.buffer, cv.last+1)
		c.hold(env, cv, b.m, b.via)
	}
}

// duplicate drops a message already held or buffered. If the one held
// under that seq is a different message, seq is not a function of the
// message: logged here, proven by the checker from the history.
func (c *Client) duplicate(env Env, cv *conv, m *wire.ChatMessage, via string) {
	c.stats.DupsDropped++
	if via == viaPush {
		c.stats.DupPushesDropped++
	}
	if old := cv.find(m.Seq); old != nil && (old.ClientMsgId != m.ClientMsgId || old.SenderId != m.SenderId) {
		env.Log().Error("client: two messages with one seq", "user", c.cfg.User, "conv", cv.id, "seq", m.Seq,
			"held", old.ClientMsgId, "got", m.ClientMsgId)
	}
}

func (cv *conv) find(seq uint64) *wire.ChatMessage {
	if b, ok := cv.buffer[seq]; ok {
		return b.m
	}
	i := sort.Search(len(cv.held), func(i int) bool { return cv.held[i].Seq >= seq })
	if i < len(cv.held) && cv.held[i].Seq == seq {
		return cv.held[i]
	}
	return nil
}

// holdOwn: an acknowledged send is held by its sender under its seq, so a
// later delivery of it (by sync) is a duplicate. Sending also advances the
// sender's read mark (the store does it in the append transaction).
func (c *Client) holdOwn(env Env, s *pendingSend, seq uint64) {
	cv := c.conv(s.conv)
	if cv == nil {
		return
	}
	m := &wire.ChatMessage{
		ConvId: s.conv, Seq: seq, SenderId: c.cfg.User, ClientMsgId: s.clientMsgID,
		Cseq: s.cseq, Body: s.body,
	}
	if c.wellFormed(env, m) {
		c.acceptIn(env, cv, m, viaOwn) // cv is m's conversation: no second lookup
	}
	cv.markRead(seq)
}

// requestSync asks for a sync of cv from what it holds: at once if a slot
// is free, else in turn. One sync per conversation is outstanding at a time.
func (c *Client) requestSync(env Env, cv *conv) {
	if cv.syncing {
		cv.syncAgain = true
		return
	}
	if !cv.syncQueued {
		cv.syncQueued = true
		c.syncQueue = append(c.syncQueue, cv.id)
	}
	c.drainSyncs(env)
}

func (c *Client) syncAll(env Env) {
	for _, id := range c.convIDs() {
		c.requestSync(env, c.convs[id])
	}
}

func (c *Client) drainSyncs(env Env) {
	for c.online && c.syncInflight < c.cfg.SyncInflightMax && len(c.syncQueue) > 0 {
		cv := c.convs[c.syncQueue[0]]
		if err := c.tr.sync(env, cv.id, cv.last, c.cfg.SyncLimit, c.syncGen); err != nil {
			return // no room on the connection: try again on the next answer
		}
		c.syncQueue = c.syncQueue[1:]
		cv.syncQueued = false
		cv.syncing = true
		cv.syncAfter = cv.last
		c.syncInflight++
		c.stats.Syncs++
	}
}

// syncCall is what a transport remembers of one outstanding sync.
type syncCall struct {
	conv  string
	after uint64
	limit int
	call  int64
	gen   uint64
}

// onSyncResp records the sync exactly as the server answered (before
// dedup: the linearizability check needs the raw result), then delivers
// the messages through the same dedup and reorder path as pushes.
func (c *Client) onSyncResp(env Env, sc syncCall, resp *wire.SyncResp) {
	c.recordSync(env, sc, resp)
	cv := c.convs[sc.conv]
	if cv == nil {
		return
	}
	current := sc.gen == c.syncGen && cv.syncing
	if current {
		cv.syncing = false
		c.syncInflight--
		c.syncFailures = 0
	}
	for _, m := range resp.Messages {
		if m.ConvId == "" {
			m.ConvId = sc.conv
		}
		if m.ConvId != sc.conv {
			env.Log().Error("client: sync returned another conversation's message",
				"user", c.cfg.User, "conv", sc.conv, "got", m.ConvId)
			continue
		}
		c.accept(env, m, viaSync)
	}
	if current {
		// Page on while the server has more and this page moved us forward
		// (no progress means a stale or broken answer: the periodic conversation
		// list shows it still behind and syncs it again).
		more := resp.LastSeq > cv.last && cv.last > sc.after
		if more || cv.syncAgain {
			cv.syncAgain = false
			c.requestSync(env, cv)
		}
	}
	c.drainSyncs(env)
}

// onSyncFailed: the sync got error code (unspecified: no answer in time);
// retry after a backoff.
func (c *Client) onSyncFailed(env Env, sc syncCall, code wire.ErrorCode) {
	c.refused(code)
	cv := c.convs[sc.conv]
	if cv == nil || sc.gen != c.syncGen || !cv.syncing {
		return
	}
	cv.syncing = false
	c.syncInflight--
	if !cv.syncRetry {
		cv.syncRetry = true
		c.syncRetry = append(c.syncRetry, cv.id)
	}
	c.syncFailures++
	if !c.armed(timerSyncRetry) && !c.stopped {
		c.arm(env, timerSyncRetry, c.backoff(env, c.syncFailures-1))
	}
	c.drainSyncs(env)
}

func (c *Client) onSyncRetry(env Env) {
	ids := c.syncRetry
	c.syncRetry = nil
	for _, id := range ids {
		cv := c.convs[id]
		cv.syncRetry = false
		c.requestSync(env, cv)
	}
}

// onConvList records the list and learns its conversations; those with
// messages the client lacks are synced.
func (c *Client) onConvList(env Env, call int64, resp *wire.ConvListResp) {
	c.recordConvList(env, call, resp)
	for _, row := range resp.Convs {
		cv := c.conv(row.ConvId)
		if cv == nil {
			c.stats.ConvsDropped++
			continue
		}
		cv.markRead(row.ReadSeq)
		if row.LastSeq > cv.last {
			c.requestSync(env, cv)
		}
	}
	// A conversation the list leaves out (the list was cut at its limit,
	// or the store does not list it) cannot be judged from it: sync it.
	if len(c.convs) > len(resp.Convs) {
		listed := make(map[string]bool, len(resp.Convs))
		for _, row := range resp.Convs {
			listed[row.ConvId] = true
		}
		for _, id := range c.convIDs() {
			if !listed[id] {
				c.requestSync(env, c.convs[id])
			}
		}
	}
}

// onReadAck records the read and moves the read mark.
func (c *Client) onReadAck(env Env, call int64, convID string, seq uint64, ack *wire.ReadAck) {
	c.recordRead(env, call, convID, seq, ack.ReadSeq)
	if cv := c.convs[convID]; cv != nil {
		cv.markRead(ack.ReadSeq)
	}
}
