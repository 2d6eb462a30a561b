// Package store holds zzim's storage contract: the domain types of messages,
// conversations and read marks, and the Store interface that the in-memory
// implementation (memstore) and the MySQL/TiDB implementation both satisfy.
// The storetest package is the conformance suite every implementation runs.
//
// Guarantees every implementation gives:
//   - seq is strictly increasing and gap-free per conversation, assigned in the
//     transaction that stores the message;
//   - Append is idempotent on (conv, sender, client_msg_id): a resend returns
//     the original seq and stores nothing;
//   - one Append call is one transaction: all of it commits, or none;
//   - sending advances the sender's read_seq to the new seq;
//   - unread = last_seq - read_seq, per user and conversation.
package store

import (
	"context"
	"errors"
)

// Sentinel errors. Wrap them; check with errors.Is.
var (
	// ErrUnknownOutcome: the call timed out or the connection broke after the
	// request may have reached the database. It may or may not have committed.
	ErrUnknownOutcome = errors.New("store: outcome unknown")
	// ErrUnavailable: the store refused the request before doing anything.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrDeadlock: the transaction was aborted and nothing was written.
	ErrDeadlock = errors.New("store: deadlock, transaction aborted")
	// ErrInvalid: the request is malformed; nothing was written.
	ErrInvalid = errors.New("store: invalid request")
)

// Bounds.
const (
	// SyncLimitMax caps a sync page.
	SyncLimitMax = 200
	// SyncLimitDefault is used when a sync asks for 0.
	SyncLimitDefault = 50
	// ConvListLimitMax caps a conversation list.
	ConvListLimitMax = 500
	// AppendBatchMax caps the appends in one group commit.
	AppendBatchMax = 256
)

// Message is one stored chat message.
type Message struct {
	ConvID      string
	Seq         uint64
	SenderID    string
	ClientMsgID string
	CSeq        uint64
	Body        string
	CreatedAtMs int64
}

// SystemSender is the sender of system notices and broadcasts. It is not a
// valid user id, so no user can impersonate it, and it gets no
// user_conversations row.
const SystemSender = "~system"

// AppendReq stores one message. On a conversation's first append, the
// sender and PeerID each get a user_conversations row (read_seq 0) naming the
// other as peer, SystemSender and empty ids excepted. A system notice has
// SenderID SystemSender and PeerID the user; a broadcast has PeerID empty
// (every user reads BroadcastConvID with their own read_seq).
type AppendReq struct {
	ConvID      string
	SenderID    string
	PeerID      string
	ListingID   string
	ClientMsgID string
	CSeq        uint64
	Body        string
	CreatedAtMs int64
}

// AppendResult: the seq the message has, and whether it was already stored.
type AppendResult struct {
	Seq         uint64
	Duplicate   bool
	CreatedAtMs int64
}

// SyncReq asks for the messages of a conversation after AfterSeq.
type SyncReq struct {
	ConvID   string
	AfterSeq uint64
	Limit    int
}

// SyncResult: Messages in seq order (at most the limit), and the
// conversation's last_seq when it was read.
type SyncResult struct {
	Messages []Message
	LastSeq  uint64
}

// MarkReadReq raises user's read_seq on conv to Seq (never lowers it; capped at last_seq).
type MarkReadReq struct {
	UserID string
	ConvID string
	Seq    uint64
}

// ReadResult: the read_seq after the mark.
type ReadResult struct {
	ReadSeq uint64
}

// ConvListReq lists user's conversations, most recently active first.
type ConvListReq struct {
	UserID string
	Limit  int
}

// ConvSummary is one row of a conversation list.
type ConvSummary struct {
	ConvID    string
	PeerID    string
	ListingID string
	LastSeq   uint64
	ReadSeq   uint64
	Unread    uint64
}

// TouchReq records that user and peer talked at LastActiveMs (contact upkeep).
type TouchReq struct {
	UserID       string
	PeerID       string
	ConvID       string
	LastActiveMs int64
}

// Contact is one row of a user's contact list.
type Contact struct {
	UserID       string
	PeerID       string
	ConvID       string
	LastActiveMs int64
}

// Store is the contract of zzim's storage. Implementations are safe for
// concurrent use by several das instances.
type Store interface {
	// Append stores reqs in one transaction and returns one result per req,
	// in order. Requests to the same conversation get consecutive seqs in
	// the order given (duplicates excepted).
	Append(ctx context.Context, reqs []AppendReq) ([]AppendResult, error)
	Sync(ctx context.Context, req SyncReq) (SyncResult, error)
	MarkRead(ctx context.Context, req MarkReadReq) (ReadResult, error)
	ConvList(ctx context.Context, req ConvListReq) ([]ConvSummary, error)
	Touch(ctx context.Context, req TouchReq) error
	Contacts(ctx context.Context, userID string) ([]Contact, error)
	// Dump returns every stored message ordered by (conv, seq): the ground
	// truth the checkers read after a run.
	Dump(ctx context.Context) ([]Message, error)
}

// ClampSyncLimit applies SyncLimitDefault and SyncLimitMax.
func ClampSyncLimit(n int) int {
	if n <= 0 {
		return SyncLimitDefault
	}
	if n > SyncLimitMax {
		return SyncLimitMax
	}
	return n
}
