package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/storetest"
)

func TestMain(m *testing.M) {
	testdeps.Setup()
	os.Exit(m.Run())
}

// databaseCount names each test's fresh database.
var databaseCount atomic.Int64

// newDatabase creates an empty database on the server of dsn.
func newDatabase(t testing.TB, dsn string) string {
	t.Helper()
	return testdeps.CreateDatabase(context.Background(), t, dsn, fmt.Sprintf("zzim_t%d", databaseCount.Add(1)))
}

func open(t testing.TB, dsns ...string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{DSNs: dsns})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	server := testdeps.MariaDB(context.Background(), t)
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, newDatabase(t, server)) })
}

// TestConformanceShared: two Store values over one database, as two das
// processes hold them.
func TestConformanceShared(t *testing.T) {
	server := testdeps.MariaDB(context.Background(), t)
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		dsn := newDatabase(t, server)
		return open(t, dsn), open(t, dsn)
	})
}

// TestConformanceSharded: two shards (two databases on one server), alone
// and as two processes.
func TestConformanceSharded(t *testing.T) {
	server := testdeps.MariaDB(context.Background(), t)
	shards := func(t *testing.T) []string { return []string{newDatabase(t, server), newDatabase(t, server)} }
	storetest.Run(t, func(t *testing.T) store.Store { return open(t, shards(t)...) })
	t.Run("Shared", func(t *testing.T) {
		storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
			dsns := shards(t)
			return open(t, dsns...), open(t, dsns...)
		})
	})
	t.Run("RowsOnTheirShards", func(t *testing.T) { testRowsOnTheirShards(t, shards(t)) })
}

// testRowsOnTheirShards checks the layout: messages on the conversation's
// shard, user_conversations on the user's.
func testRowsOnTheirShards(t *testing.T, dsns []string) {
	s := open(t, dsns...)
	ctx := context.Background()
	var reqs []store.AppendReq
	for i := range 16 {
		reqs = append(reqs, store.AppendReq{
			ConvID: fmt.Sprintf("p:u%d:v%d:l", i, i), SenderID: fmt.Sprintf("u%d", i), PeerID: fmt.Sprintf("v%d", i),
			ListingID: "l", ClientMsgID: "m", Body: "hi", CreatedAtMs: int64(i + 1),
		})
	}
	if _, err := s.Append(ctx, reqs); err != nil {
		t.Fatalf("append: %v", err)
	}
	count := func(sh int, query string, args ...any) int {
		var n int
		if err := s.shards[sh].QueryRowContext(ctx, query, args...).Scan(&n); err != nil {
			t.Fatalf("shard %d: %v", sh, err)
		}
		return n
	}
	crossShard := 0
	for _, r := range reqs {
		cs, us := s.convShard(r.ConvID), s.userShard(r.SenderID)
		if got := count(cs, "SELECT COUNT(*) FROM messages WHERE conv_id = ?", r.ConvID); got != 1 {
			t.Errorf("%s on shard %d: got %d messages, want 1", r.ConvID, cs, got)
		}
		if got := count(1-cs, "SELECT COUNT(*) FROM messages WHERE conv_id = ?", r.ConvID); got != 0 {
			t.Errorf("%s on shard %d: got %d messages, want 0", r.ConvID, 1-cs, got)
		}
		if got := count(us, "SELECT read_seq FROM user_conversations WHERE user_id = ? AND conv_id = ?", r.SenderID, r.ConvID); got != 1 {
			t.Errorf("%s's read_seq on shard %d: got %d, want 1", r.SenderID, us, got)
		}
		if cs != us {
			crossShard++
		}
	}
	if crossShard == 0 || crossShard == len(reqs) {
		t.Errorf("got %d of %d senders on another shard than their conversation, want some but not all", crossShard, len(reqs))
	}
}

// TestMigrateConcurrently: processes starting at once apply the schema
// once, and a restart applies nothing.
func TestMigrateConcurrently(t *testing.T) {
	dsn := newDatabase(t, testdeps.MariaDB(context.Background(), t))
	const processes = 4
	var wg sync.WaitGroup
	errs := make([]error, processes)
	for i := range processes {
		wg.Go(func() {
			s, err := Open(context.Background(), Config{DSNs: []string{dsn}})
			if err == nil {
				s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("process %d: got %v, want nil", i, err)
		}
	}
	s := open(t, dsn)
	migrations, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.shards[0].QueryRow("SELECT COUNT(*) FROM schema_migrations").Scan(&n); err != nil || n != len(migrations) {
		t.Errorf("schema_migrations: got %d rows (%v), want %d", n, err, len(migrations))
	}
}

// TestStatementsPerAppend: a group commit sends as many statements for 200
// appends as for 1 (round trips are the limit).
func TestStatementsPerAppend(t *testing.T) {
	s := open(t, newDatabase(t, testdeps.MariaDB(context.Background(), t)))
	ctx := context.Background()
	// One connection, so the session's counter sees every statement.
	s.shards[0].SetMaxOpenConns(1)
	questions := func() int {
		var name string
		var n int
		if err := s.shards[0].QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Questions'").Scan(&name, &n); err != nil {
			t.Fatalf("questions: %v", err)
		}
		return n
	}
	batch := func(n, round int) []store.AppendReq {
		var reqs []store.AppendReq
		for i := range n {
			reqs = append(reqs, store.AppendReq{
				ConvID: fmt.Sprintf("p:u%d:v:l", i%7), SenderID: fmt.Sprintf("u%d", i%7), PeerID: "v", ListingID: "l",
				ClientMsgID: fmt.Sprintf("r%d-%d", round, i), Body: "x", CreatedAtMs: int64(round),
			})
		}
		return reqs
	}
	perBatch := map[int]int{}
	for round, n := range []int{1, 200, 1, 200} {
		before := questions()
		if _, err := s.Append(ctx, batch(n, round)); err != nil {
			t.Fatalf("append %d: %v", n, err)
		}
		perBatch[n] = questions() - before - 1 // the SHOW itself counts
	}
	if perBatch[1] != perBatch[200] || perBatch[1] > 8 {
		t.Errorf("statements: got %d for 1 append and %d for 200, want the same, at most 8", perBatch[1], perBatch[200])
	}
	t.Logf("statements per group commit: %d", perBatch[200])
}

// countingConn counts the packets a connection sends: with no packet over
// the driver's buffer, one Write is one command, so one round trip.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

var countedWrites atomic.Int64

func init() {
	mysql.RegisterDialContext("countingtcp", func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: &countedWrites}, nil
	})
}

// TestRoundTripsPerAppend: a group commit costs two round trips (BEGIN
// with the lock-and-dedup query, the writes with COMMIT), whatever its
// size: each round trip is a read, a write and a wake-up on both sides.
func TestRoundTripsPerAppend(t *testing.T) {
	mc, err := mysql.ParseDSN(newDatabase(t, testdeps.MariaDB(context.Background(), t)))
	if err != nil {
		t.Fatal(err)
	}
	mc.Net = "countingtcp"
	s := open(t, mc.FormatDSN())
	s.shards[0].SetMaxOpenConns(1)
	ctx := context.Background()
	if err := s.shards[0].PingContext(ctx); err != nil { // the connection's handshake is not an append's
		t.Fatal(err)
	}
	perBatch := map[int]int64{}
	for round, n := range []int{1, 200, 1, 200} {
		var reqs []store.AppendReq
		for i := range n {
			reqs = append(reqs, store.AppendReq{
				ConvID: fmt.Sprintf("p:u%d:v:l", i%7), SenderID: fmt.Sprintf("u%d", i%7), PeerID: "v", ListingID: "l",
				ClientMsgID: fmt.Sprintf("r%d-%d", round, i), Body: "x", CreatedAtMs: int64(round),
			})
		}
		before := countedWrites.Load()
		if _, err := s.Append(ctx, reqs); err != nil {
			t.Fatalf("append %d: %v", n, err)
		}
		perBatch[n] = countedWrites.Load() - before
	}
	if perBatch[1] != 2 || perBatch[200] != 2 {
		t.Errorf("round trips: got %d for 1 append and %d for 200, want 2", perBatch[1], perBatch[200])
	}
}

// TestRefusedWriteLeavesNoTransaction: when the server refuses a statement
// of the write round trip, nothing commits and the pooled connection comes
// back with no transaction open (its locks released), so the next append
// on it stands alone.
func TestRefusedWriteLeavesNoTransaction(t *testing.T) {
	s := open(t, newDatabase(t, testdeps.MariaDB(context.Background(), t)))
	s.shards[0].SetMaxOpenConns(1) // the next statement runs on the connection that failed
	ctx := context.Background()
	req := func(id string) store.AppendReq {
		return store.AppendReq{ConvID: "p:u1:v1:l", SenderID: "u1", PeerID: "v1", ListingID: "l", ClientMsgID: id, Body: "x", CreatedAtMs: 1}
	}
	if _, err := s.Append(ctx, []store.AppendReq{req("m1")}); err != nil {
		t.Fatal(err)
	}
	// A row at the seq the next append will take, behind the store's back:
	// that append's INSERT of messages hits the primary key.
	if _, err := s.shards[0].ExecContext(ctx, "INSERT INTO messages (conv_id, seq, sender_id, client_msg_id, cseq, body, created_at_ms)"+
		" VALUES ('p:u1:v1:l', 2, 'u1', 'planted', 0, 'x', 1)"); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(ctx, []store.AppendReq{req("m2")})
	if !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrUnknownOutcome) {
		t.Fatalf("append onto a taken seq: got %v, want ErrUnavailable (not committed)", err)
	}
	var inTx int
	if err := s.shards[0].QueryRowContext(ctx, "SELECT @@in_transaction").Scan(&inTx); err != nil {
		t.Fatal(err)
	}
	if inTx != 0 {
		t.Fatalf("the connection came back to the pool inside a transaction")
	}
	var last uint64
	if err := s.shards[0].QueryRowContext(ctx, "SELECT last_seq FROM conversations WHERE conv_id = 'p:u1:v1:l'").Scan(&last); err != nil {
		t.Fatal(err)
	}
	if last != 1 {
		t.Fatalf("last_seq %d after a refused append, want 1", last)
	}
	if _, err := s.shards[0].ExecContext(ctx, "DELETE FROM messages WHERE client_msg_id = 'planted'"); err != nil {
		t.Fatal(err)
	}
	res, err := s.Append(ctx, []store.AppendReq{req("m2")})
	if err != nil || res[0].Seq != 2 {
		t.Fatalf("append after the refused one: %v %v, want seq 2", res, err)
	}
}

func TestOpenRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = "zzim", "zzim", "tcp", addr, "zzim"
	_, err = Open(context.Background(), Config{DSNs: []string{cfg.FormatDSN()}})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable", err)
	}
}

func TestClassify(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	read := &net.OpError{Op: "read", Net: "tcp", Err: io.ErrUnexpectedEOF}
	tests := []struct {
		name string
		err  error
		when sent
		want error
	}{
		{"deadlock", &mysql.MySQLError{Number: errDeadlock}, notCommitted, errRetry},
		{"lock wait timeout", &mysql.MySQLError{Number: errLockWaitTimeout}, notCommitted, errRetry},
		{"data too long", &mysql.MySQLError{Number: errDataTooLong}, notCommitted, store.ErrInvalid},
		{"server error at commit", &mysql.MySQLError{Number: 1105}, maybeCommitted, store.ErrUnavailable},
		{"refused", dial, maybeCommitted, store.ErrUnavailable},
		{"broken before commit", read, notCommitted, store.ErrUnavailable},
		{"broken at commit", read, maybeCommitted, store.ErrUnknownOutcome},
		{"bad conn at commit", mysql.ErrInvalidConn, maybeCommitted, store.ErrUnknownOutcome},
		{"deadline at commit", context.DeadlineExceeded, maybeCommitted, store.ErrUnknownOutcome},
		{"deadline before commit", context.DeadlineExceeded, notCommitted, store.ErrUnavailable},
	}
	sentinels := []error{errRetry, store.ErrInvalid, store.ErrUnavailable, store.ErrUnknownOutcome, store.ErrDeadlock}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := classify("op", tt.err, tt.when)
			for _, s := range sentinels {
				if errors.Is(got, s) != (s == tt.want) {
					t.Errorf("got %v: errors.Is %v = %v, want only %v", got, s, errors.Is(got, s), tt.want)
				}
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("got %v, want it to wrap %v", got, tt.err)
			}
		})
	}
}

func TestRowsOf(t *testing.T) {
	tests := []struct {
		n, width int
		want     string
	}{
		{1, 1, "(?)"},
		{3, 1, "(?),(?),(?)"},
		{1, 3, "(?,?,?)"},
		{2, 2, "(?,?),(?,?)"},
	}
	for _, tt := range tests {
		if got := rowsOf(tt.n, tt.width); got != tt.want {
			t.Errorf("rowsOf(%d, %d): got %s, want %s", tt.n, tt.width, got, tt.want)
		}
	}
}

func TestSplitStatements(t *testing.T) {
	got := splitStatements("-- comment\nCREATE TABLE a (\n  x INT\n);\n\nCREATE TABLE b (y INT);\n")
	want := []string{"CREATE TABLE a (\n  x INT\n)", "CREATE TABLE b (y INT)"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("statement %d: got %q, want %q", i, got[i], want[i])
		}
	}
}

// TestIDTooLong: ids longer than the columns
// are refused before anything is sent.
func TestIDTooLong(t *testing.T) {
	s := &Store{shards: []*sql.DB{nil}} // never reached: validation comes first
	long := string(make([]byte, idSizeMax+1))
	_, err := s.Append(context.Background(), []store.AppendReq{{ConvID: long, SenderID: "a", ClientMsgID: "m"}})
	if !errors.Is(err, store.ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid", err)
	}
}
