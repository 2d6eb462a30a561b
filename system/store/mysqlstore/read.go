package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"

	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// Sync implements store.Store. One statement reads the page and last_seq
// together, so they come from one consistent read: the page never holds a
// seq beyond last_seq, and a sync that starts after an append committed
// sees it.
func (s *Store) Sync(ctx context.Context, req store.SyncReq) (store.SyncResult, error) {
	if req.ConvID == "" || len(req.ConvID) > idSizeMax {
		return store.SyncResult{}, fmt.Errorf("%w: sync: conv_id of %d bytes", store.ErrInvalid, len(req.ConvID))
	}
	if err := ctxDone(ctx, "sync"); err != nil {
		return store.SyncResult{}, err
	}
	limit := store.ClampSyncLimit(req.Limit)
	rows, err := s.shards[s.convShard(req.ConvID)].QueryContext(ctx,
		"SELECT c.last_seq, m.seq, m.sender_id, m.client_msg_id, m.cseq, m.body, m.created_at_ms"+
			" FROM conversations c LEFT JOIN messages m ON m.conv_id = c.conv_id AND m.seq > ? AND m.seq <= c.last_seq"+
			" WHERE c.conv_id = ? ORDER BY m.seq LIMIT ?", req.AfterSeq, req.ConvID, limit)
	if err != nil {
		return store.SyncResult{}, classify("sync", err, notCommitted)
	}
	defer rows.Close()
	var res store.SyncResult
	for rows.Next() {
		var seq, cseq sql.Null[uint64]
		var sender, clientMsgID, body sql.NullString
		var createdAtMs sql.NullInt64
		if err := rows.Scan(&res.LastSeq, &seq, &sender, &clientMsgID, &cseq, &body, &createdAtMs); err != nil {
			return store.SyncResult{}, classify("sync", err, notCommitted)
		}
		if !seq.Valid { // the conversation has nothing after AfterSeq
			continue
		}
		res.Messages = append(res.Messages, store.Message{
			ConvID: req.ConvID, Seq: seq.V, SenderID: sender.String, ClientMsgID: clientMsgID.String,
			CSeq: cseq.V, Body: body.String, CreatedAtMs: createdAtMs.Int64,
		})
	}
	if err := rows.Err(); err != nil {
		return store.SyncResult{}, classify("sync", err, notCommitted)
	}
	return res, nil
}

// MarkRead implements store.Store: read_seq rises to min(Seq, last_seq) and
// never falls. Any user may mark the broadcast conversation (the first mark
// creates their row); another conversation only a user with a row there.
// last_seq is read before the mark, and only grows, so the cap is safe.
func (s *Store) MarkRead(ctx context.Context, req store.MarkReadReq) (store.ReadResult, error) {
	switch {
	case req.UserID == "" || req.ConvID == "":
		return store.ReadResult{}, fmt.Errorf("%w: mark read: empty user_id or conv_id", store.ErrInvalid)
	case req.UserID == store.SystemSender:
		return store.ReadResult{}, fmt.Errorf("%w: mark read: %q has no read marks", store.ErrInvalid, req.UserID)
	case len(req.UserID) > idSizeMax || len(req.ConvID) > idSizeMax:
		return store.ReadResult{}, fmt.Errorf("%w: mark read: id over %d bytes", store.ErrInvalid, idSizeMax)
	}
	if err := ctxDone(ctx, "mark read"); err != nil {
		return store.ReadResult{}, err
	}
	last, err := s.lastSeq(ctx, req.ConvID)
	if err != nil {
		return store.ReadResult{}, err
	}
	mark := min(req.Seq, last)
	db := s.shards[s.userShard(req.UserID)]
	if req.ConvID == wire.BroadcastConvID {
		if last == 0 {
			return store.ReadResult{}, nil // nothing to mark, and no row worth writing
		}
		_, err = db.ExecContext(ctx, "INSERT INTO user_conversations (user_id, conv_id, peer_id, listing_id, read_seq)"+
			" VALUES (?, ?, '', '', ?) ON DUPLICATE KEY UPDATE read_seq = GREATEST(read_seq, VALUES(read_seq))",
			req.UserID, req.ConvID, mark)
		if err != nil {
			return store.ReadResult{}, classify("mark read", err, maybeCommitted)
		}
	} else {
		res, err := db.ExecContext(ctx, "UPDATE user_conversations SET read_seq = GREATEST(read_seq, ?)"+
			" WHERE user_id = ? AND conv_id = ?", mark, req.UserID, req.ConvID)
		if err != nil {
			return store.ReadResult{}, classify("mark read", err, maybeCommitted)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 { // found rows, not changed rows
			return store.ReadResult{}, fmt.Errorf("%w: mark read: user %q has no row for conversation %q",
				store.ErrInvalid, req.UserID, req.ConvID)
		}
	}
	var readSeq uint64
	if err := db.QueryRowContext(ctx, "SELECT read_seq FROM user_conversations WHERE user_id = ? AND conv_id = ?",
		req.UserID, req.ConvID).Scan(&readSeq); err != nil {
		return store.ReadResult{}, classify("mark read: read back", err, maybeCommitted)
	}
	return store.ReadResult{ReadSeq: readSeq}, nil
}

// lastSeq reads a conversation's last_seq (0 when it has none).
func (s *Store) lastSeq(ctx context.Context, convID string) (uint64, error) {
	var last uint64
	err := s.shards[s.convShard(convID)].QueryRowContext(ctx,
		"SELECT last_seq FROM conversations WHERE conv_id = ?", convID).Scan(&last)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, classify("last_seq", err, notCommitted)
	}
	return last, nil
}

// listEntry is a conversation list row with its sort key.
type listEntry struct {
	summary      store.ConvSummary
	lastActiveMs int64
}

// ConvList implements store.Store: the user's conversations, and the
// broadcast conversation once it has messages, most recently active first
// (created_at_ms of the latest message, then conv_id descending: a
// database has no store-wide append order to break ties with). The user's
// rows are read before last_seq, and last_seq only grows, so unread never
// goes negative.
func (s *Store) ConvList(ctx context.Context, req store.ConvListReq) ([]store.ConvSummary, error) {
	if req.UserID == "" || len(req.UserID) > idSizeMax {
		return nil, fmt.Errorf("%w: conv list: user_id of %d bytes", store.ErrInvalid, len(req.UserID))
	}
	if err := ctxDone(ctx, "conv list"); err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 || limit > store.ConvListLimitMax {
		limit = store.ConvListLimitMax
	}
	entries, err := s.userConversations(ctx, req.UserID, limit)
	if err != nil {
		return nil, err
	}
	if bc, ok, err := s.broadcastEntry(ctx, req.UserID); err != nil {
		return nil, err
	} else if ok {
		entries = append(entries, bc)
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].lastActiveMs != entries[j].lastActiveMs {
			return entries[i].lastActiveMs > entries[j].lastActiveMs
		}
		return entries[i].summary.ConvID > entries[j].summary.ConvID
	})
	out := make([]store.ConvSummary, 0, min(limit, len(entries)))
	for i := 0; i < len(entries) && i < limit; i++ {
		out = append(out, entries[i].summary)
	}
	return out, nil
}

// userConversations reads up to limit of the user's rows (the broadcast
// read mark excepted) with each conversation's last_seq: a join on one
// shard, a second read per conversation shard with several.
func (s *Store) userConversations(ctx context.Context, userID string, limit int) ([]listEntry, error) {
	const cols = "uc.conv_id, uc.peer_id, uc.listing_id, uc.read_seq, uc.last_active_ms"
	const order = " ORDER BY uc.last_active_ms DESC, uc.conv_id DESC LIMIT ?"
	db := s.shards[s.userShard(userID)]
	query := "SELECT " + cols + ", c.last_seq FROM user_conversations uc JOIN conversations c ON c.conv_id = uc.conv_id" +
		" WHERE uc.user_id = ? AND uc.conv_id <> ?" + order
	joined := len(s.shards) == 1
	if !joined {
		query = "SELECT " + cols + ", 0 FROM user_conversations uc WHERE uc.user_id = ? AND uc.conv_id <> ?" + order
	}
	rows, err := db.QueryContext(ctx, query, userID, wire.BroadcastConvID, limit)
	if err != nil {
		return nil, classify("conv list", err, notCommitted)
	}
	defer rows.Close()
	var entries []listEntry
	for rows.Next() {
		var e listEntry
		sm := &e.summary
		if err := rows.Scan(&sm.ConvID, &sm.PeerID, &sm.ListingID, &sm.ReadSeq, &e.lastActiveMs, &sm.LastSeq); err != nil {
			return nil, classify("conv list", err, notCommitted)
		}
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("conv list", err, notCommitted)
	}
	if !joined {
		if err := s.fillLastSeqs(ctx, entries); err != nil {
			return nil, err
		}
	}
	for i := range entries {
		sm := &entries[i].summary
		sm.Unread = unread(sm.LastSeq, sm.ReadSeq)
	}
	return entries, nil
}

// fillLastSeqs reads last_seq for entries from their conversation shards.
func (s *Store) fillLastSeqs(ctx context.Context, entries []listEntry) error {
	byShard := map[int][]int{}
	for i := range entries {
		sh := s.convShard(entries[i].summary.ConvID)
		byShard[sh] = append(byShard[sh], i)
	}
	for sh, idx := range byShard { // each shard writes disjoint entries: order does not reach the output
		args := make([]any, len(idx))
		for k, i := range idx {
			args[k] = entries[i].summary.ConvID
		}
		rows, err := s.shards[sh].QueryContext(ctx, "SELECT conv_id, last_seq FROM conversations WHERE conv_id IN "+
			rowsOf(1, len(idx)), args...)
		if err != nil {
			return classify("conv list: last_seq", err, notCommitted)
		}
		last := map[string]uint64{}
		for rows.Next() {
			var id string
			var seq uint64
			if err := rows.Scan(&id, &seq); err != nil {
				rows.Close()
				return classify("conv list: last_seq", err, notCommitted)
			}
			last[id] = seq
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return classify("conv list: last_seq", err, notCommitted)
		}
		for _, i := range idx {
			entries[i].summary.LastSeq = last[entries[i].summary.ConvID]
		}
	}
	return nil
}

// broadcastEntry is the broadcast conversation's row for the user, if it
// has messages: the user's read mark first, then last_seq.
func (s *Store) broadcastEntry(ctx context.Context, userID string) (listEntry, bool, error) {
	var read uint64
	err := s.shards[s.userShard(userID)].QueryRowContext(ctx,
		"SELECT read_seq FROM user_conversations WHERE user_id = ? AND conv_id = ?", userID, wire.BroadcastConvID).Scan(&read)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return listEntry{}, false, classify("conv list: broadcast read", err, notCommitted)
	}
	var e listEntry
	err = s.shards[s.convShard(wire.BroadcastConvID)].QueryRowContext(ctx,
		"SELECT last_seq, last_active_ms FROM conversations WHERE conv_id = ?", wire.BroadcastConvID).Scan(&e.summary.LastSeq, &e.lastActiveMs)
	if errors.Is(err, sql.ErrNoRows) {
		return listEntry{}, false, nil
	}
	if err != nil {
		return listEntry{}, false, classify("conv list: broadcast", err, notCommitted)
	}
	if e.summary.LastSeq == 0 {
		return listEntry{}, false, nil
	}
	e.summary.ConvID, e.summary.ReadSeq = wire.BroadcastConvID, read
	e.summary.Unread = unread(e.summary.LastSeq, read)
	return e, true, nil
}

func unread(last, read uint64) uint64 {
	if read >= last {
		return 0
	}
	return last - read
}

// Touch implements store.Store: one row per (user, peer) naming the
// conversation of the latest activity; last_active never goes back, so a
// late redelivery changes nothing. conv_id is assigned before
// last_active_ms: MySQL evaluates the assignments left to right.
func (s *Store) Touch(ctx context.Context, req store.TouchReq) error {
	if req.UserID == "" || req.PeerID == "" {
		return fmt.Errorf("%w: touch: empty user_id or peer_id", store.ErrInvalid)
	}
	if len(req.UserID) > idSizeMax || len(req.PeerID) > idSizeMax || len(req.ConvID) > idSizeMax {
		return fmt.Errorf("%w: touch: id over %d bytes", store.ErrInvalid, idSizeMax)
	}
	if err := ctxDone(ctx, "touch"); err != nil {
		return err
	}
	_, err := s.shards[s.userShard(req.UserID)].ExecContext(ctx,
		"INSERT INTO contacts (user_id, peer_id, conv_id, last_active_ms) VALUES (?, ?, ?, ?)"+
			" ON DUPLICATE KEY UPDATE conv_id = IF(VALUES(last_active_ms) >= last_active_ms, VALUES(conv_id), conv_id),"+
			" last_active_ms = GREATEST(last_active_ms, VALUES(last_active_ms))",
		req.UserID, req.PeerID, req.ConvID, req.LastActiveMs)
	return classify("touch", err, maybeCommitted)
}

// Contacts implements store.Store: most recently active first, then by peer.
func (s *Store) Contacts(ctx context.Context, userID string) ([]store.Contact, error) {
	if userID == "" || len(userID) > idSizeMax {
		return nil, fmt.Errorf("%w: contacts: user_id of %d bytes", store.ErrInvalid, len(userID))
	}
	if err := ctxDone(ctx, "contacts"); err != nil {
		return nil, err
	}
	rows, err := s.shards[s.userShard(userID)].QueryContext(ctx,
		"SELECT peer_id, conv_id, last_active_ms FROM contacts WHERE user_id = ? ORDER BY last_active_ms DESC, peer_id", userID)
	if err != nil {
		return nil, classify("contacts", err, notCommitted)
	}
	defer rows.Close()
	var out []store.Contact
	for rows.Next() {
		c := store.Contact{UserID: userID}
		if err := rows.Scan(&c.PeerID, &c.ConvID, &c.LastActiveMs); err != nil {
			return nil, classify("contacts", err, notCommitted)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("contacts", err, notCommitted)
	}
	return out, nil
}

// Dump implements store.Store: every message of every shard, ordered by
// (conv_id bytes, seq), as Go compares strings.
func (s *Store) Dump(ctx context.Context) ([]store.Message, error) {
	if err := ctxDone(ctx, "dump"); err != nil {
		return nil, err
	}
	var out []store.Message
	for sh, db := range s.shards {
		rows, err := db.QueryContext(ctx, "SELECT conv_id, seq, sender_id, client_msg_id, cseq, body, created_at_ms"+
			" FROM messages ORDER BY conv_id, seq")
		if err != nil {
			return nil, classify(fmt.Sprintf("dump shard %d", sh), err, notCommitted)
		}
		for rows.Next() {
			var m store.Message
			if err := rows.Scan(&m.ConvID, &m.Seq, &m.SenderID, &m.ClientMsgID, &m.CSeq, &m.Body, &m.CreatedAtMs); err != nil {
				rows.Close()
				return nil, classify(fmt.Sprintf("dump shard %d", sh), err, notCommitted)
			}
			out = append(out, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, classify(fmt.Sprintf("dump shard %d", sh), err, notCommitted)
		}
	}
	if len(s.shards) > 1 {
		sort.Slice(out, func(i, j int) bool {
			if out[i].ConvID != out[j].ConvID {
				return out[i].ConvID < out[j].ConvID
			}
			return out[i].Seq < out[j].Seq
		})
	}
	return out, nil
}
