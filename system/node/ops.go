package node

import (
	"time"

	"github.com/zzim/zzim/system/store"
)

// StoreOp is a database request (das only). Exactly one field is set.
type StoreOp struct {
	Append   []store.AppendReq // group append: one transaction
	Sync     *store.SyncReq
	MarkRead *store.MarkReadReq
	ConvList *store.ConvListReq
	Touch    *store.TouchReq
}

// StoreResult is the OK result of a StoreOp.
type StoreResult struct {
	Append   []store.AppendResult
	Sync     store.SyncResult
	Read     store.ReadResult
	ConvList []store.ConvSummary
}

// PresenceKind names a presence operation.
type PresenceKind uint8

const (
	PresenceSet    PresenceKind = iota + 1 // user → entry, conn, incarnation, with TTL
	PresenceGet                            // look up users
	PresenceDelete                         // remove if it still names Conn at Entry
	PresenceScan                           // page through online users (broadcast fan-out)
)

// PresenceEntry says where a user is connected.
type PresenceEntry struct {
	User        string
	Entry       Addr
	Conn        ConnID
	Incarnation Incarnation
	Device      string
}

// PresenceOp is a request to presence (Redis in production).
type PresenceOp struct {
	Kind   PresenceKind
	Entry  PresenceEntry // Set, Delete
	TTL    time.Duration // Set
	Users  []string      // Get
	Cursor uint64        // Scan
	Count  int           // Scan page size
}

// PresenceResult answers Get (Found aligned with Users; zero entries are
// absent), Scan (Found plus the next Cursor, 0 when done) and Set (Previous:
// the entry it replaced, if any).
type PresenceResult struct {
	Found    []PresenceEntry
	Cursor   uint64
	Previous *PresenceEntry
}

// RegistryKind names a registry operation.
type RegistryKind uint8

const (
	RegistryRegister   RegistryKind = iota + 1 // create or refresh the slot's key with TTL
	RegistryHeartbeat                          // refresh the TTL
	RegistryDeregister                         // delete the key
)

// RegistryOp is a request to the registry (JetStream KV in production).
type RegistryOp struct {
	Kind RegistryKind
	Addr Addr
	TTL  time.Duration
}
