// Package memstore is the in-memory implementation of store.Store: the
// simulator's database and the embedded default of `zzim up`. One mutex
// makes every call one transaction; nothing here blocks, reads a clock or
// starts a goroutine, so a simulator run stays reproducible.
package memstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

var _ store.Store = (*Store)(nil)

// rowsMaxDefault bounds the rows (messages, user_conversations, contacts,
// broadcast read marks) a store holds when Options.RowsMax is 0: about
// 32 million, a few GiB, far past any simulator run. A full store refuses
// writes with store.ErrUnavailable, as a database whose disk is full.
const rowsMaxDefault = 1 << 25

// rowsPerAppendMax is what one append may add: the message and the
// user_conversations rows of sender and peer.
const rowsPerAppendMax = 3

// Options configures a Store.
type Options struct {
	// Bugs enables bug switches; memstore honours bugs.NoDedup.
	Bugs bugs.Set
	// RowsMax bounds the rows held (0: rowsMaxDefault).
	RowsMax int
}

// Store is an in-memory store.Store, safe for concurrent use.
type Store struct {
	noDedup bool
	rowsMax int

	mu    sync.Mutex
	rows  int
	order uint64 // counts appends store-wide: the tie-break of "most recently active"
	convs map[string]*conversation
	users map[string]*user

	// convListScratch is ConvList's sort buffer, kept between calls (under
	// mu) so a call allocates only its result. It grows to the most rows
	// one user has, plus one; what it points to the store holds anyway.
	convListScratch []convListEntry
}

// convListEntry is one row of a ConvList being sorted: m is nil for the
// broadcast conversation (read is then the user's broadcast read mark).
type convListEntry struct {
	convID string
	conv   *conversation
	m      *membership
	read   uint64
}

// conversation is one conversation's log. msgs[i] has seq i+1, so last_seq
// is len(msgs) and gap-freedom holds by construction.
type conversation struct {
	msgs      []store.Message
	dedup     map[string]map[string]uint64 // sender → client_msg_id → seq
	lastMs    int64                        // CreatedAtMs of the last message
	lastOrder uint64                       // Store.order at the last append
}

// user holds one user's user_conversations rows, their read mark on the
// broadcast conversation (which has no per-user rows) and their contacts.
type user struct {
	convs         map[string]*membership
	broadcastRead uint64
	broadcastRow  bool                      // broadcastRead has been counted in rows
	contacts      map[string]*store.Contact // by peer
}

type membership struct {
	conv      *conversation // the row's conversation, so ConvList needs no lookup by id
	peerID    string
	listingID string
	readSeq   uint64
}

// New returns an empty store.
func New(opts Options) *Store {
	rowsMax := opts.RowsMax
	if rowsMax <= 0 {
		rowsMax = rowsMaxDefault
	}
	return &Store{
		noDedup: opts.Bugs.On(bugs.NoDedup),
		rowsMax: rowsMax,
		convs:   map[string]*conversation{},
		users:   map[string]*user{},
	}
}

// Append implements store.Store. Every request is validated before anything
// is applied, so an invalid batch stores nothing.
func (s *Store) Append(ctx context.Context, reqs []store.AppendReq) ([]store.AppendResult, error) {
	if err := ready(ctx); err != nil {
		return nil, err
	}
	if err := validateAppends(reqs); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rows+rowsPerAppendMax*len(reqs) > s.rowsMax {
		return nil, fmt.Errorf("%w: memstore full (%d rows of %d)", store.ErrUnavailable, s.rows, s.rowsMax)
	}
	results := make([]store.AppendResult, len(reqs))
	for i := range reqs {
		results[i] = s.appendOne(&reqs[i])
	}
	return results, nil
}

func validateAppends(reqs []store.AppendReq) error {
	if len(reqs) > store.AppendBatchMax {
		return fmt.Errorf("%w: batch of %d appends exceeds %d", store.ErrInvalid, len(reqs), store.AppendBatchMax)
	}
	for i := range reqs {
		if err := validateAppend(&reqs[i]); err != nil {
			return fmt.Errorf("%w: append %d of %d: %w", store.ErrInvalid, i, len(reqs), err)
		}
	}
	return nil
}

func validateAppend(r *store.AppendReq) error {
	switch {
	case r.ConvID == "":
		return errors.New("empty conv_id")
	case r.SenderID == "":
		return errors.New("empty sender_id")
	case r.ClientMsgID == "":
		return errors.New("empty client_msg_id")
	}
	return wire.ValidBody(r.Body)
}

// appendOne applies one validated request. s.mu is held.
func (s *Store) appendOne(r *store.AppendReq) store.AppendResult {
	c := s.convs[r.ConvID]
	if c == nil {
		c = &conversation{dedup: map[string]map[string]uint64{}}
		s.convs[r.ConvID] = c
	}
	sent := c.dedup[r.SenderID]
	if sent == nil {
		sent = map[string]uint64{}
		c.dedup[r.SenderID] = sent
	}
	first, dup := sent[r.ClientMsgID]
	if dup && !s.noDedup { // bugs.NoDedup: store the resend again
		return store.AppendResult{Seq: first, Duplicate: true, CreatedAtMs: c.msgs[first-1].CreatedAtMs}
	}
	seq := uint64(len(c.msgs)) + 1
	c.msgs = append(c.msgs, store.Message{
		ConvID: r.ConvID, Seq: seq, SenderID: r.SenderID, ClientMsgID: r.ClientMsgID,
		CSeq: r.CSeq, Body: r.Body, CreatedAtMs: r.CreatedAtMs,
	})
	if !dup {
		sent[r.ClientMsgID] = seq
	}
	s.rows++
	s.order++
	c.lastMs, c.lastOrder = r.CreatedAtMs, s.order

	if m := s.ensureMember(r.SenderID, c, r.ConvID, r.PeerID, r.ListingID); m != nil {
		m.readSeq = max(m.readSeq, seq) // sending advances the sender's read_seq
	} else if r.ConvID == wire.BroadcastConvID {
		s.raiseRead(r.SenderID, r.ConvID, seq)
	}
	s.ensureMember(r.PeerID, c, r.ConvID, r.SenderID, r.ListingID)
	return store.AppendResult{Seq: seq, CreatedAtMs: r.CreatedAtMs}
}

// ensureMember returns userID's user_conversations row for conv (c, named
// convID), created if missing. The system sender, empty ids and the broadcast conversation have
// none (nil).
func (s *Store) ensureMember(userID string, c *conversation, convID, peerID, listingID string) *membership {
	if userID == "" || userID == store.SystemSender || convID == wire.BroadcastConvID {
		return nil
	}
	u := s.user(userID)
	m := u.convs[convID]
	if m == nil {
		m = &membership{conv: c, peerID: peerID, listingID: listingID}
		u.convs[convID] = m
		s.rows++
	}
	return m
}

func (s *Store) user(userID string) *user {
	u := s.users[userID]
	if u == nil {
		u = &user{convs: map[string]*membership{}, contacts: map[string]*store.Contact{}}
		s.users[userID] = u
	}
	return u
}

// raiseRead raises userID's read_seq on conv to seq; it never lowers it.
// It returns the read_seq after, and false if the user has no row there.
func (s *Store) raiseRead(userID, convID string, seq uint64) (uint64, bool) {
	if userID == "" || userID == store.SystemSender {
		return 0, false
	}
	if convID == wire.BroadcastConvID {
		u := s.user(userID)
		if !u.broadcastRow {
			u.broadcastRow = true
			s.rows++
		}
		u.broadcastRead = max(u.broadcastRead, seq)
		return u.broadcastRead, true
	}
	u := s.users[userID]
	if u == nil {
		return 0, false
	}
	m := u.convs[convID]
	if m == nil {
		return 0, false
	}
	m.readSeq = max(m.readSeq, seq)
	return m.readSeq, true
}

func (s *Store) lastSeq(convID string) uint64 {
	if c := s.convs[convID]; c != nil {
		return uint64(len(c.msgs))
	}
	return 0
}

// Sync implements store.Store.
func (s *Store) Sync(ctx context.Context, req store.SyncReq) (store.SyncResult, error) {
	if err := ready(ctx); err != nil {
		return store.SyncResult{}, err
	}
	if req.ConvID == "" {
		return store.SyncResult{}, fmt.Errorf("%w: sync: empty conv_id", store.ErrInvalid)
	}
	limit := uint64(store.ClampSyncLimit(req.Limit))
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.convs[req.ConvID]
	if c == nil {
		return store.SyncResult{}, nil
	}
	last := uint64(len(c.msgs))
	if req.AfterSeq >= last {
		return store.SyncResult{LastSeq: last}, nil
	}
	end := min(last, req.AfterSeq+limit)
	// A copy: callers must not see later appends through a shared array.
	page := make([]store.Message, end-req.AfterSeq)
	copy(page, c.msgs[req.AfterSeq:end])
	return store.SyncResult{Messages: page, LastSeq: last}, nil
}

// MarkRead implements store.Store. The broadcast conversation takes a mark
// from any user; another conversation only from a user with a row there
// (logic checks participants first, so a miss is a caller's bug).
func (s *Store) MarkRead(ctx context.Context, req store.MarkReadReq) (store.ReadResult, error) {
	if err := ready(ctx); err != nil {
		return store.ReadResult{}, err
	}
	if req.UserID == "" || req.ConvID == "" {
		return store.ReadResult{}, fmt.Errorf("%w: mark read: empty user_id or conv_id", store.ErrInvalid)
	}
	if req.UserID == store.SystemSender {
		return store.ReadResult{}, fmt.Errorf("%w: mark read: %q has no read marks", store.ErrInvalid, req.UserID)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.lastSeq(req.ConvID)
	if req.ConvID == wire.BroadcastConvID && last == 0 {
		return store.ReadResult{}, nil // nothing to mark, and no row worth a slot
	}
	if req.ConvID == wire.BroadcastConvID && s.rows >= s.rowsMax {
		if u := s.users[req.UserID]; u == nil || !u.broadcastRow {
			return store.ReadResult{}, fmt.Errorf("%w: memstore full (%d rows)", store.ErrUnavailable, s.rows)
		}
	}
	readSeq, ok := s.raiseRead(req.UserID, req.ConvID, min(req.Seq, last))
	if !ok {
		return store.ReadResult{}, fmt.Errorf("%w: mark read: user %q has no row for conversation %q",
			store.ErrInvalid, req.UserID, req.ConvID)
	}
	return store.ReadResult{ReadSeq: readSeq}, nil
}

// ConvList implements store.Store: the user's conversations, and the
// broadcast conversation once it has messages, most recently active first
// (CreatedAtMs of the last message, then store append order).
func (s *Store) ConvList(ctx context.Context, req store.ConvListReq) ([]store.ConvSummary, error) {
	if err := ready(ctx); err != nil {
		return nil, err
	}
	if req.UserID == "" {
		return nil, fmt.Errorf("%w: conv list: empty user_id", store.ErrInvalid)
	}
	limit := req.Limit
	if limit <= 0 || limit > store.ConvListLimitMax {
		limit = store.ConvListLimitMax
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[req.UserID]
	entries := s.convListScratch[:0]
	if u != nil {
		for convID, m := range u.convs {
			entries = append(entries, convListEntry{convID: convID, conv: m.conv, m: m, read: m.readSeq})
		}
	}
	if c := s.convs[wire.BroadcastConvID]; c != nil && len(c.msgs) > 0 {
		var read uint64
		if u != nil {
			read = u.broadcastRead
		}
		entries = append(entries, convListEntry{convID: wire.BroadcastConvID, conv: c, read: read})
	}
	s.convListScratch = entries
	// Map iteration order must not reach the output: lastOrder is unique per
	// conversation, so this order is total.
	slices.SortFunc(entries, func(x, y convListEntry) int {
		a, b := x.conv, y.conv
		if c := cmp.Compare(b.lastMs, a.lastMs); c != 0 {
			return c
		}
		return cmp.Compare(b.lastOrder, a.lastOrder)
	})
	out := make([]store.ConvSummary, min(limit, len(entries)))
	for i := range out {
		e := &entries[i]
		last := uint64(len(e.conv.msgs))
		out[i] = store.ConvSummary{ConvID: e.convID, LastSeq: last, ReadSeq: e.read, Unread: last - e.read}
		if e.m != nil {
			out[i].PeerID, out[i].ListingID = e.m.peerID, e.m.listingID
		}
	}
	return out, nil
}

// Touch implements store.Store: one row per (user, peer), naming the
// conversation of the latest activity. last_active never goes back, so a
// late redelivery of an old touch changes nothing.
func (s *Store) Touch(ctx context.Context, req store.TouchReq) error {
	if err := ready(ctx); err != nil {
		return err
	}
	if req.UserID == "" || req.PeerID == "" {
		return fmt.Errorf("%w: touch: empty user_id or peer_id", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.user(req.UserID)
	c := u.contacts[req.PeerID]
	if c == nil {
		if s.rows >= s.rowsMax {
			return fmt.Errorf("%w: memstore full (%d rows)", store.ErrUnavailable, s.rows)
		}
		u.contacts[req.PeerID] = &store.Contact{
			UserID: req.UserID, PeerID: req.PeerID, ConvID: req.ConvID, LastActiveMs: req.LastActiveMs,
		}
		s.rows++
		return nil
	}
	if req.LastActiveMs >= c.LastActiveMs {
		c.ConvID, c.LastActiveMs = req.ConvID, req.LastActiveMs
	}
	return nil
}

// Contacts implements store.Store: most recently active first, then by peer.
func (s *Store) Contacts(ctx context.Context, userID string) ([]store.Contact, error) {
	if err := ready(ctx); err != nil {
		return nil, err
	}
	if userID == "" {
		return nil, fmt.Errorf("%w: contacts: empty user_id", store.ErrInvalid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[userID]
	if u == nil {
		return nil, nil
	}
	out := make([]store.Contact, 0, len(u.contacts))
	for _, c := range u.contacts {
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].LastActiveMs != out[j].LastActiveMs {
			return out[i].LastActiveMs > out[j].LastActiveMs
		}
		return out[i].PeerID < out[j].PeerID
	})
	return out, nil
}

// Dump implements store.Store: every message ordered by (conv, seq).
func (s *Store) Dump(ctx context.Context) ([]store.Message, error) {
	if err := ready(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.convs))
	total := 0
	for id, c := range s.convs {
		ids = append(ids, id)
		total += len(c.msgs)
	}
	sort.Strings(ids)
	out := make([]store.Message, 0, total)
	for _, id := range ids {
		out = append(out, s.convs[id].msgs...)
	}
	return out, nil
}

// ready refuses a call whose context is already done, before doing anything.
func ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
	}
	return nil
}
