package das

import (
	"fmt"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// validate checks that req carries exactly one op and names the business
// that op belongs to. Appends are also checked as the store would: one
// invalid append in a group commit would otherwise fail the whole batch,
// and its neighbours with it.
func validate(req *wire.StoreRequest) error {
	ops := 0
	want := wire.Business(-1)
	var convErr error // the append's conv_id parsed once, for both checks
	if req.Append != nil {
		ops++
		want = wire.Business_BUSINESS_MESSAGE
		var c wire.Conv
		if c, convErr = wire.ParseConvID(req.Append.ConvId); convErr == nil && c.Kind != wire.ConvPair {
			want = wire.Business_BUSINESS_SYSTEM
		}
	}
	if req.Sync != nil {
		ops++
		want = wire.Business_BUSINESS_MESSAGE
	}
	if req.MarkRead != nil {
		ops++
		want = wire.Business_BUSINESS_UNREAD
	}
	if req.ConvList != nil {
		ops++
		want = wire.Business_BUSINESS_CONTACT
	}
	if req.TouchContact != nil {
		ops++
		want = wire.Business_BUSINESS_CONTACT
	}
	if ops != 1 {
		return fmt.Errorf("das: request has %d ops, want exactly 1", ops)
	}
	if req.Business != want {
		return fmt.Errorf("das: business %s does not serve this op (want %s)", req.Business, want)
	}
	if req.Append != nil {
		return validateAppend(req.Append, convErr)
	}
	return nil
}

// validateAppend checks a; convErr is what parsing its conv_id returned.
func validateAppend(a *wire.AppendItem, convErr error) error {
	if convErr != nil {
		return fmt.Errorf("das: append: %w", convErr)
	}
	if a.SenderId != store.SystemSender {
		if err := wire.ValidUserID(a.SenderId); err != nil {
			return fmt.Errorf("das: append sender: %w", err)
		}
	}
	if err := wire.ValidClientMsgID(a.ClientMsgId); err != nil {
		return fmt.Errorf("das: append: %w", err)
	}
	if err := wire.ValidBody(a.Body); err != nil {
		return fmt.Errorf("das: append: %w", err)
	}
	return nil
}

func appendReq(a *wire.AppendItem) store.AppendReq {
	return store.AppendReq{
		ConvID:      a.ConvId,
		SenderID:    a.SenderId,
		PeerID:      a.PeerId,
		ListingID:   a.ListingId,
		ClientMsgID: a.ClientMsgId,
		CSeq:        a.Cseq,
		Body:        a.Body,
		CreatedAtMs: a.CreatedAtMs,
	}
}

// readOp turns a validated non-append request into its StoreOp.
func readOp(req *wire.StoreRequest) node.StoreOp {
	switch {
	case req.Sync != nil:
		return node.StoreOp{Sync: &store.SyncReq{
			ConvID: req.Sync.ConvId, AfterSeq: req.Sync.AfterSeq, Limit: store.ClampSyncLimit(int(req.Sync.Limit)),
		}}
	case req.MarkRead != nil:
		return node.StoreOp{MarkRead: &store.MarkReadReq{
			UserID: req.MarkRead.UserId, ConvID: req.MarkRead.ConvId, Seq: req.MarkRead.Seq,
		}}
	case req.ConvList != nil:
		return node.StoreOp{ConvList: &store.ConvListReq{
			UserID: req.ConvList.UserId, Limit: min(int(req.ConvList.Limit), store.ConvListLimitMax),
		}}
	}
	t := req.TouchContact
	return node.StoreOp{Touch: &store.TouchReq{
		UserID: t.UserId, PeerID: t.PeerId, ConvID: t.ConvId, LastActiveMs: t.LastActiveMs,
	}}
}

// readReply builds the OK answer of a non-append request.
func (d *Das) readReply(env node.Env, req *wire.StoreRequest, res *node.StoreResult) *wire.StoreReply {
	switch {
	case req.Sync != nil:
		return &wire.StoreReply{Sync: d.syncResp(env, req.Sync, res.Sync)}
	case req.MarkRead != nil:
		return &wire.StoreReply{Read: &wire.ReadAck{ConvId: req.MarkRead.ConvId, ReadSeq: res.Read.ReadSeq}}
	case req.ConvList != nil:
		out := &wire.ConvListResp{Convs: make([]*wire.ConvSummary, len(res.ConvList))}
		sums := make([]wire.ConvSummary, len(res.ConvList)) // one allocation for all
		for i, c := range res.ConvList {
			s := &sums[i]
			s.ConvId, s.PeerId, s.ListingId = c.ConvID, c.PeerID, c.ListingID
			s.LastSeq, s.ReadSeq, s.Unread = c.LastSeq, c.ReadSeq, c.Unread
			out.Convs[i] = s
		}
		return &wire.StoreReply{ConvList: out}
	}
	return &wire.StoreReply{} // touch: nothing to return
}

func (d *Das) syncResp(env node.Env, op *wire.SyncOp, res store.SyncResult) *wire.SyncResp {
	msgs := res.Messages
	lastSeq := res.LastSeq
	if d.cfg.Bugs.On(bugs.StaleSync) {
		// Bug: serve a snapshot lagging by StaleSyncBound: only messages old
		// enough, and a last_seq that matches them.
		cutoff := env.Now().Add(-d.cfg.StaleSyncBound).UnixMilli()
		kept := 0
		for kept < len(msgs) && msgs[kept].CreatedAtMs < cutoff {
			kept++
		}
		if kept < len(msgs) {
			msgs = msgs[:kept]
			lastSeq = op.AfterSeq
			if kept > 0 {
				lastSeq = msgs[kept-1].Seq
			}
		}
	}
	out := &wire.SyncResp{
		ConvId:   op.ConvId,
		Messages: make([]*wire.ChatMessage, len(msgs)),
		LastSeq:  lastSeq,
		AfterSeq: op.AfterSeq,
		Limit:    uint32(store.ClampSyncLimit(int(op.Limit))),
	}
	all := make([]wire.ChatMessage, len(msgs)) // one allocation for all
	for i, m := range msgs {
		c := &all[i]
		c.ConvId, c.Seq, c.SenderId, c.ClientMsgId = m.ConvID, m.Seq, m.SenderID, m.ClientMsgID
		c.Cseq, c.Body, c.CreatedAtMs = m.CSeq, m.Body, m.CreatedAtMs
		out.Messages[i] = c
	}
	return out
}

// ackEarly is bugs.AckBeforeCommit: answer the append now with a seq guessed
// from the last one seen, before the store has even been asked.
func (d *Das) ackEarly(env node.Env, r *request) {
	conv := r.req.Append.ConvId
	if _, ok := d.seqCache[conv]; !ok && len(d.seqCache) >= seqCacheMax {
		clear(d.seqCache)
	}
	seq := d.seqCache[conv] + 1
	d.seqCache[conv] = seq
	d.stats.EarlyAcks++
	d.send(env, r, &wire.StoreReply{Append: &wire.AppendResult{Seq: seq, CreatedAtMs: r.req.Append.CreatedAtMs}})
	r.acked = true
}

// learnSeq feeds bugs.AckBeforeCommit's cache from real append results.
func (d *Das) learnSeq(conv string, seq uint64) {
	if !d.cfg.Bugs.On(bugs.AckBeforeCommit) {
		return
	}
	if _, ok := d.seqCache[conv]; !ok && len(d.seqCache) >= seqCacheMax {
		clear(d.seqCache)
	}
	d.seqCache[conv] = max(d.seqCache[conv], seq)
}
