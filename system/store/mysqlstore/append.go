package mysqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/wire"
)

// msgKey is the idempotency key of a message.
type msgKey struct{ conv, sender, clientMsgID string }

// storedMsg is what a duplicate answers with.
type storedMsg struct {
	seq         uint64
	createdAtMs int64
}

// userRow is one user_conversations upsert.
type userRow struct {
	userID, convID, peerID, listingID string
	readSeq                           uint64
	lastActiveMs                      int64
}

// Append implements store.Store. Every request is validated before anything
// is sent, so an invalid batch stores nothing.
func (s *Store) Append(ctx context.Context, reqs []store.AppendReq) ([]store.AppendResult, error) {
	if err := validateAppends(reqs); err != nil {
		return nil, err
	}
	if err := ctxDone(ctx, "append"); err != nil {
		return nil, err
	}
	results := make([]store.AppendResult, len(reqs))
	if len(reqs) == 0 {
		return results, nil
	}
	groups := s.groupByConvShard(reqs)
	remote := make([][]userRow, len(groups))
	errs := make([]error, len(groups))
	if len(groups) == 1 {
		remote[0], errs[0] = s.appendShard(ctx, groups[0].shard, reqs, groups[0].idx, results)
	} else {
		var wg sync.WaitGroup
		for g := range groups {
			wg.Go(func() {
				remote[g], errs[g] = s.appendShard(ctx, groups[g].shard, reqs, groups[g].idx, results)
			})
		}
		wg.Wait()
	}
	if err := combineShardErrors(errs); err != nil {
		return nil, err
	}
	if err := s.upsertRemoteUsers(ctx, remote); err != nil {
		return nil, err
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
	for _, id := range []string{r.ConvID, r.SenderID, r.PeerID, r.ListingID, r.ClientMsgID} {
		if len(id) > idSizeMax {
			return fmt.Errorf("id of %d bytes exceeds %d", len(id), idSizeMax)
		}
	}
	return wire.ValidBody(r.Body)
}

// shardGroup is the requests of one Append that go to one shard.
type shardGroup struct {
	shard int
	idx   []int // into the Append's reqs, in order
}

func (s *Store) groupByConvShard(reqs []store.AppendReq) []shardGroup {
	byShard := map[int]int{} // shard → index in groups
	var groups []shardGroup
	for i := range reqs {
		sh := s.convShard(reqs[i].ConvID)
		g, ok := byShard[sh]
		if !ok {
			g = len(groups)
			byShard[sh] = g
			groups = append(groups, shardGroup{shard: sh})
		}
		groups[g].idx = append(groups[g].idx, i)
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].shard < groups[j].shard })
	return groups
}

// combineShardErrors: with every shard failed, the first shard's error
// (nothing committed anywhere); with some committed and some not, the
// outcome of the batch as a whole is unknown and a resend settles it.
func combineShardErrors(errs []error) error {
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			if first == nil {
				first = err
			}
		}
	}
	switch {
	case failed == 0:
		return nil
	case failed == len(errs):
		return first
	}
	return fmt.Errorf("append: %w: %d of %d shards committed: %w",
		store.ErrUnknownOutcome, len(errs)-failed, len(errs), errors.Join(errs...))
}

// appendShard runs the shard's transaction, again after a deadlock or lock
// wait timeout, at most deadlockRetryMax more times. It fills results[idx]
// on commit and returns the user rows that live on other shards.
func (s *Store) appendShard(ctx context.Context, shard int, reqs []store.AppendReq, idx []int, results []store.AppendResult) ([]userRow, error) {
	for attempt := 0; ; attempt++ {
		remote, err := s.appendTx(ctx, shard, reqs, idx, results)
		if !errors.Is(err, errRetry) {
			return remote, err
		}
		if attempt == deadlockRetryMax {
			return nil, fmt.Errorf("append: %w after %d tries: %w", store.ErrDeadlock, attempt+1, err)
		}
		if err := ctxDone(ctx, "append retry"); err != nil {
			return nil, err
		}
	}
}

// appendTx is one try of a shard's group commit: two round trips whatever
// len(idx) is. The first opens the transaction and creates, locks and reads
// the batch's conversations and finds its duplicates; the second writes
// the messages, the new last_seqs and the local user rows and commits.
// Each round trip costs both sides a read, a write and a wake-up: with BEGIN,
// COMMIT and the six statements each in a round trip of its own, a batched
// append cost about a quarter more CPU here and up to a fifth more in the
// database (docs/performance.md "Store").
//
// The transaction is driven on a pinned connection, not a *sql.Tx, so that
// START TRANSACTION and COMMIT ride with the statements. That connection
// must never go back to the pool with a transaction open: every path that
// may leave one open rolls it back, and a connection whose state is not
// known is discarded.
func (s *Store) appendTx(ctx context.Context, shard int, reqs []store.AppendReq, idx []int, results []store.AppendResult) (remote []userRow, err error) {
	conn, err := s.shards[shard].Conn(ctx)
	if err != nil {
		return nil, classify("append: begin", err, notCommitted)
	}
	open := true // a transaction may be open on conn
	defer func() {
		if open {
			rollback(conn)
		}
		conn.Close()
	}()
	lastSeq, stored, err := lockAndFind(ctx, conn, reqs, idx, !s.noDedup) // bugs.NoDedup: resends are stored again
	if err != nil {
		return nil, err
	}
	p := s.plan(reqs, idx, lastSeq, stored)
	local, remote := s.splitUserRows(p.users, shard)
	if err := writeAndCommit(ctx, conn, p.messages, p.convs, local); err != nil {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			// The server refused a statement: the ones after it,
			// COMMIT included, did not run (or COMMIT itself failed,
			// which rolls back). Nothing committed.
			return nil, classify("append: write", err, notCommitted)
		}
		// No answer: COMMIT may have run. The connection's state is not
		// known, so it does not go back to the pool.
		open = false
		discard(conn)
		return nil, classify("append: commit", err, maybeCommitted)
	}
	open = false
	for k, i := range idx {
		results[i] = p.results[k]
	}
	return remote, nil
}

// rollbackTimeout bounds the ROLLBACK of an aborted append.
const rollbackTimeout = 5 * time.Second

// rollback ends whatever transaction conn may hold, on a context of its own
// (the caller's may be what ended it); a connection that cannot roll back
// is discarded, and the server rolls back a transaction whose connection
// closes.
func rollback(conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
	defer cancel()
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		discard(conn)
	}
}

// discard closes conn's driver connection instead of pooling it.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
}

// lockAndFind creates the batch's missing conversation rows, locks them all
// in conv_id order (the multi-row upsert takes exclusive locks in the order
// of its rows, so every transaction takes them in one order) and reads
// their last_seq; then, with dedup, it reads which of the batch's keys are
// already stored (the conversations are locked, so no other writer can add
// one meanwhile). One query of two or three statements: the upsert's OK
// result is skipped by the driver, so the rows are the lock's, then the
// duplicates'. A statement that fails stops the ones after it, and the
// transaction, not committed, is rolled back.
// FORCE INDEX: MariaDB 10.11 otherwise may range-scan the primary key on
// conv_id alone, reading every message of the conversation.
func lockAndFind(ctx context.Context, conn *sql.Conn, reqs []store.AppendReq, idx []int, dedup bool) (map[string]uint64, map[msgKey]storedMsg, error) {
	convIDs := make([]string, 0, len(idx))
	seen := map[string]bool{}
	for _, i := range idx {
		if id := reqs[i].ConvID; !seen[id] {
			seen[id] = true
			convIDs = append(convIDs, id)
		}
	}
	sort.Strings(convIDs)
	args := make([]any, 0, 2*len(convIDs)+3*len(idx))
	for _, id := range convIDs {
		args = append(args, id)
	}
	args = append(args, args...)
	var q strings.Builder
	q.WriteString("START TRANSACTION; INSERT INTO conversations (conv_id) VALUES " + rowsOf(len(convIDs), 1) +
		" ON DUPLICATE KEY UPDATE conv_id = conv_id;" +
		" SELECT conv_id, last_seq FROM conversations WHERE conv_id IN " + rowsOf(1, len(convIDs)) + " ORDER BY conv_id FOR UPDATE")
	if dedup {
		keys := map[msgKey]bool{}
		for _, i := range idx {
			r := &reqs[i]
			k := msgKey{r.ConvID, r.SenderID, r.ClientMsgID}
			if !keys[k] {
				keys[k] = true
				args = append(args, k.conv, k.sender, k.clientMsgID)
			}
		}
		q.WriteString("; SELECT conv_id, sender_id, client_msg_id, seq, created_at_ms FROM messages FORCE INDEX (messages_dedup)" +
			" WHERE (conv_id, sender_id, client_msg_id) IN (" + rowsOf(len(keys), 3) + ")")
	}
	const op = "append: lock conversations"
	rows, err := conn.QueryContext(ctx, q.String(), args...)
	if err != nil {
		return nil, nil, classify(op, err, notCommitted)
	}
	defer rows.Close()
	lastSeq := make(map[string]uint64, len(convIDs))
	for rows.Next() {
		var id string
		var seq uint64
		if err := rows.Scan(&id, &seq); err != nil {
			return nil, nil, classify(op, err, notCommitted)
		}
		lastSeq[id] = seq
	}
	if err := rows.Err(); err != nil {
		return nil, nil, classify(op, err, notCommitted)
	}
	if len(lastSeq) != len(convIDs) {
		// Broken invariant: the rows were just created in this transaction.
		return nil, nil, fmt.Errorf("append: %w: locked %d conversations of %d", store.ErrUnavailable, len(lastSeq), len(convIDs))
	}
	stored := map[msgKey]storedMsg{}
	if !dedup {
		return lastSeq, stored, nil
	}
	const dupOp = "append: find duplicates"
	if !rows.NextResultSet() {
		if err := rows.Err(); err != nil {
			return nil, nil, classify(dupOp, err, notCommitted)
		}
		return nil, nil, fmt.Errorf("%s: %w: no result", dupOp, store.ErrUnavailable)
	}
	for rows.Next() {
		var k msgKey
		var m storedMsg
		if err := rows.Scan(&k.conv, &k.sender, &k.clientMsgID, &m.seq, &m.createdAtMs); err != nil {
			return nil, nil, classify(dupOp, err, notCommitted)
		}
		stored[k] = m
	}
	if err := rows.Err(); err != nil {
		return nil, nil, classify(dupOp, err, notCommitted)
	}
	return lastSeq, stored, nil
}

// convUpdate is a conversation's new last message.
type convUpdate struct {
	convID       string
	lastSeq      uint64
	lastActiveMs int64
}

// appendPlan is what one transaction writes, decided in memory.
type appendPlan struct {
	results  []store.AppendResult // one per idx
	messages []store.Message
	convs    []convUpdate // in conv_id order
	users    []userRow    // in (user_id, conv_id) order
}

// plan assigns seqs in request order: a stored or earlier-in-batch key is a
// duplicate with the original seq; anything else takes last_seq+1.
func (s *Store) plan(reqs []store.AppendReq, idx []int, lastSeq map[string]uint64, stored map[msgKey]storedMsg) appendPlan {
	p := appendPlan{results: make([]store.AppendResult, len(idx))}
	lastMs := map[string]int64{}
	users := map[[2]string]*userRow{}
	for k, i := range idx {
		r := &reqs[i]
		key := msgKey{r.ConvID, r.SenderID, r.ClientMsgID}
		if m, ok := stored[key]; ok {
			p.results[k] = store.AppendResult{Seq: m.seq, Duplicate: true, CreatedAtMs: m.createdAtMs}
			if len(s.shards) > 1 {
				// Repairs rows a failed cross-shard step left out; a no-op otherwise.
				addUserRows(users, r, m.seq, m.createdAtMs)
			}
			continue
		}
		seq := lastSeq[r.ConvID] + 1
		lastSeq[r.ConvID] = seq
		lastMs[r.ConvID] = r.CreatedAtMs
		stored[key] = storedMsg{seq: seq, createdAtMs: r.CreatedAtMs}
		p.results[k] = store.AppendResult{Seq: seq, CreatedAtMs: r.CreatedAtMs}
		p.messages = append(p.messages, store.Message{
			ConvID: r.ConvID, Seq: seq, SenderID: r.SenderID, ClientMsgID: r.ClientMsgID,
			CSeq: r.CSeq, Body: r.Body, CreatedAtMs: r.CreatedAtMs,
		})
		addUserRows(users, r, seq, r.CreatedAtMs)
	}
	for convID, ms := range lastMs {
		p.convs = append(p.convs, convUpdate{convID: convID, lastSeq: lastSeq[convID], lastActiveMs: ms})
	}
	sort.Slice(p.convs, func(i, j int) bool { return p.convs[i].convID < p.convs[j].convID })
	for _, u := range users {
		p.users = append(p.users, *u)
	}
	sortUserRows(p.users)
	return p
}

// addUserRows records the sender's and the peer's rows for a message at
// seq: the sender has read it; the peer's row exists. The system sender,
// empty ids and the broadcast conversation have no rows.
func addUserRows(users map[[2]string]*userRow, r *store.AppendReq, seq uint64, createdAtMs int64) {
	add := func(userID, peerID string, readSeq uint64) {
		if userID == "" || userID == store.SystemSender || r.ConvID == wire.BroadcastConvID {
			return
		}
		key := [2]string{userID, r.ConvID}
		u := users[key]
		if u == nil {
			u = &userRow{userID: userID, convID: r.ConvID, peerID: peerID, listingID: r.ListingID}
			users[key] = u
		}
		u.readSeq = max(u.readSeq, readSeq)
		u.lastActiveMs = max(u.lastActiveMs, createdAtMs)
	}
	add(r.SenderID, r.PeerID, seq)
	add(r.PeerID, r.SenderID, 0)
}

func sortUserRows(rows []userRow) {
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].userID != rows[j].userID {
			return rows[i].userID < rows[j].userID
		}
		return rows[i].convID < rows[j].convID
	})
}

// splitUserRows separates the rows stored on shard from the others.
func (s *Store) splitUserRows(rows []userRow, shard int) (local, remote []userRow) {
	for _, u := range rows {
		if s.userShard(u.userID) == shard {
			local = append(local, u)
		} else {
			remote = append(remote, u)
		}
	}
	return local, remote
}

// writeAndCommit writes the plan and commits, in one round trip of up to
// four statements: the messages, every changed conversation's last_seq
// (the rows exist and are locked, so that upsert only updates), the user
// rows of this shard, COMMIT. A statement that fails stops the ones after
// it, so a refused write commits nothing. The driver's error is returned
// as it is: whether it is the server's refusal decides what it means.
func writeAndCommit(ctx context.Context, conn *sql.Conn, msgs []store.Message, convs []convUpdate, users []userRow) error {
	var q strings.Builder
	args := make([]any, 0, 7*len(msgs)+3*len(convs)+6*len(users))
	sep := func() {
		if q.Len() > 0 {
			q.WriteString("; ")
		}
	}
	if len(msgs) > 0 {
		q.WriteString("INSERT INTO messages (conv_id, seq, sender_id, client_msg_id, cseq, body, created_at_ms) VALUES " + rowsOf(len(msgs), 7))
		for _, m := range msgs {
			args = append(args, m.ConvID, m.Seq, m.SenderID, m.ClientMsgID, m.CSeq, m.Body, m.CreatedAtMs)
		}
	}
	if len(convs) > 0 {
		sep()
		q.WriteString("INSERT INTO conversations (conv_id, last_seq, last_active_ms) VALUES " + rowsOf(len(convs), 3) +
			" ON DUPLICATE KEY UPDATE last_seq = VALUES(last_seq), last_active_ms = VALUES(last_active_ms)")
		for _, c := range convs {
			args = append(args, c.convID, c.lastSeq, c.lastActiveMs)
		}
	}
	if len(users) > 0 {
		sep()
		q.WriteString(userRowsUpsert(len(users)))
		args = appendUserRowArgs(args, users)
	}
	sep()
	q.WriteString("COMMIT")
	_, err := conn.ExecContext(ctx, q.String(), args...)
	return err
}

// execer is a *sql.Tx or a *sql.DB.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// upsertUserRows creates missing rows and raises read_seq and
// last_active_ms, never lowering them: idempotent, so it may run again.
// The rows come sorted, so concurrent upserts lock them in one order.
func upsertUserRows(ctx context.Context, ex execer, rows []userRow) error {
	if len(rows) == 0 {
		return nil
	}
	_, err := ex.ExecContext(ctx, userRowsUpsert(len(rows)), appendUserRowArgs(make([]any, 0, 6*len(rows)), rows)...)
	return err
}

// userRowsUpsert is the statement of n user rows; appendUserRowArgs its arguments.
func userRowsUpsert(n int) string {
	return "INSERT INTO user_conversations (user_id, conv_id, peer_id, listing_id, read_seq, last_active_ms) VALUES " +
		rowsOf(n, 6) + " ON DUPLICATE KEY UPDATE read_seq = GREATEST(read_seq, VALUES(read_seq))," +
		" last_active_ms = GREATEST(last_active_ms, VALUES(last_active_ms))"
}

func appendUserRowArgs(args []any, rows []userRow) []any {
	for _, u := range rows {
		args = append(args, u.userID, u.convID, u.peerID, u.listingID, u.readSeq, u.lastActiveMs)
	}
	return args
}

// upsertRemoteUsers writes, after the message commits, the user rows that
// live on other shards: one autocommit statement per user shard.
func (s *Store) upsertRemoteUsers(ctx context.Context, remote [][]userRow) error {
	byShard := map[int][]userRow{}
	for _, rows := range remote {
		for _, u := range rows {
			sh := s.userShard(u.userID)
			byShard[sh] = append(byShard[sh], u)
		}
	}
	shards := make([]int, 0, len(byShard))
	for sh := range byShard {
		shards = append(shards, sh)
	}
	sort.Ints(shards)
	for _, sh := range shards {
		rows := byShard[sh]
		sortUserRows(rows)
		for attempt := 0; ; attempt++ {
			err := classify("append: remote user rows", upsertUserRows(ctx, s.shards[sh], rows), maybeCommitted)
			if err == nil {
				break
			}
			if !errors.Is(err, errRetry) || attempt == deadlockRetryMax {
				// The messages are committed: only a resend (which
				// finds them as duplicates) repairs these rows.
				return fmt.Errorf("append: %w: messages committed, user rows on shard %d not written: %w",
					store.ErrUnknownOutcome, sh, err)
			}
		}
	}
	return nil
}
