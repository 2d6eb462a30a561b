// Package hardening attacks an in-process zzim cluster over real loopback
// sockets with untrusted clients (oversized frames, garbage, slowloris, a
// client that never reads, floods, forged senders and tokens, connection
// storms) while well-behaved reference clients keep sending and receiving;
// the checkers then judge the well-behaved clients' history.
package hardening

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/clientrun"
	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/entry"
	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/logic"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/system/wire"
)

var secret = []byte("hardening-secret")

// Test bounds that differ from the defaults, to keep the suite short. Every
// other limit runs at its default (docs/limits.md).
const (
	testLoginDeadline    = 2 * time.Second
	testPushesPendingMax = 32
)

// testCluster is every role in one live.Process with in-memory deps; app
// and HTTP listeners are real loopback sockets.
type testCluster struct {
	proc  *live.Process
	store store.Store
	app   string // entry-0's app address
	http  string // httpentry-0's address
}

func logger() *slog.Logger {
	if os.Getenv("ZZIM_E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startCluster(t *testing.T) *testCluster {
	t.Helper()
	return startClusterOn(t, memstore.New(memstore.Options{}))
}

// startClusterOn starts the cluster with st as the database.
func startClusterOn(t *testing.T, st store.Store) *testCluster {
	t.Helper()
	topo := map[node.Role]int{node.RoleEntry: 1, node.RoleHTTPEntry: 1, node.RoleLogic: 2, node.RoleExtLogic: 1, node.RoleDas: 2}
	cfg := cluster.Config{Topology: topo, Secret: secret, PlatformKey: "platform-key",
		LogicTimeout: 500 * time.Millisecond, DasTimeout: 500 * time.Millisecond}
	tc := &testCluster{store: st}
	deps := live.Deps{Store: tc.store, Presence: live.NewMemPresence(), Queue: live.NewMemQueue(), Registry: live.NewMemRegistry()}
	tc.proc = live.NewProcess(live.Config{Topology: topo, Logger: logger()}, deps)
	t.Cleanup(func() { tc.proc.Shutdown(context.Background(), 0) })
	for _, a := range cluster.Addrs(topo) {
		spec := cfg.Spec(a, "127.0.0.1", 0, 0, nil)
		switch a.Role {
		case node.RoleEntry:
			ec := entry.Config{Topology: topo, Secret: secret, LogicTimeout: cfg.LogicTimeout,
				LoginDeadline: testLoginDeadline, PushesPendingMax: testPushesPendingMax}
			spec.New = func() node.Node { return entry.New(ec) }
		case node.RoleLogic:
			lc := logic.Config{Topology: topo, DasTimeout: cfg.DasTimeout} // default rate limit
			spec.New = func() node.Node { return logic.New(lc) }
		}
		if err := tc.proc.Start(spec); err != nil {
			t.Fatalf("start %s: %v", a, err)
		}
	}
	tc.proc.WatchRegistry()
	tc.app = tc.proc.AppAddr(node.Addr{Role: node.RoleEntry})
	tc.http = tc.proc.HTTPAddr(node.Addr{Role: node.RoleHTTPEntry})
	return tc
}

// entryStats reads entry-0's counters on its own goroutine.
func (tc *testCluster) entryStats() entry.Stats {
	var st entry.Stats
	tc.proc.Host(node.Addr{Role: node.RoleEntry}).Inspect(func(n node.Node) { st = n.(*entry.Entry).Stats() })
	return st
}

// logicStats sums the logic instances' counters that the tests read.
func (tc *testCluster) logicRateLimited() uint64 {
	var n uint64
	for s := 0; s < 2; s++ {
		tc.proc.Host(node.Addr{Role: node.RoleLogic, Slot: s}).Inspect(func(x node.Node) { n += x.(*logic.Logic).Stats().RateLimited })
	}
	return n
}

// metric is a counter or gauge of the process's Prometheus registry.
func (tc *testCluster) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := tc.proc.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func (tc *testCluster) dump(t *testing.T) []store.Message {
	t.Helper()
	msgs, err := tc.store.Dump(context.Background())
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	return msgs
}

func token(user string, ttl time.Duration) string {
	return wire.SignToken(secret, user, time.Now().Add(ttl))
}

// waitFor polls cond every 10ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// fleet runs the well-behaved reference clients and records their history.
type fleet struct {
	t     *testing.T
	tc    *testCluster
	clock *clientrun.Clock
	rec   *clientrun.Recorder
	mu    sync.Mutex
	all   []*clientrun.Runner
	acked map[string]uint64 // client_msg_id → seq
	conv  map[string]string // client_msg_id → conv
	num   int
}

func newFleet(t *testing.T, tc *testCluster) *fleet {
	return &fleet{t: t, tc: tc, clock: clientrun.NewClock(), rec: &clientrun.Recorder{},
		acked: map[string]uint64{}, conv: map[string]string{}}
}

func (f *fleet) start(t *testing.T, user string, transport client.Transport) *clientrun.Runner {
	f.mu.Lock()
	f.num++
	cfg := client.Config{
		User: user, Device: fmt.Sprintf("d%d", f.num), Token: token(user, time.Hour), ClientNum: f.num,
		Transport: transport, Entries: []string{f.tc.app}, HTTP: "http://" + f.tc.http,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		RequestTimeout: 2 * time.Second, SyncIntervalMax: 3 * time.Second, PollWait: 2 * time.Second,
	}
	f.mu.Unlock()
	cfg.OnSendDone = func(_ client.Env, id string, seq uint64, code string) {
		if code != "" {
			f.t.Errorf("%s: send %s failed definitely with %s; a well-behaved client's send must not", user, id, code)
			return
		}
		f.mu.Lock()
		f.acked[id] = seq
		f.mu.Unlock()
	}
	r := clientrun.Start(cfg, clientrun.Options{Clock: f.clock, Recorder: f.rec, Logger: logger()})
	f.mu.Lock()
	f.all = append(f.all, r)
	f.mu.Unlock()
	f.t.Cleanup(r.Stop)
	waitFor(t, 5*time.Second, user+" online", func() bool { return online(r) })
	return r
}

// send queues one message; false when the client's queue is full.
func (f *fleet) send(r *clientrun.Runner, conv, body string) bool {
	var id string
	var err error
	r.Do(func(c *client.Client, env client.Env) { id, err = c.Send(env, conv, body) })
	if err != nil {
		return false
	}
	f.mu.Lock()
	f.conv[id] = conv
	f.mu.Unlock()
	return true
}

func online(r *clientrun.Runner) bool {
	var ok bool
	r.Do(func(c *client.Client, _ client.Env) { ok = c.Online() })
	return ok
}

func unacked(r *clientrun.Runner) int {
	n := -1
	r.Do(func(c *client.Client, _ client.Env) { n = c.Unacked() })
	return n
}

func held(r *clientrun.Runner, conv string) []*wire.ChatMessage {
	var out []*wire.ChatMessage
	r.Do(func(c *client.Client, _ client.Env) { out = c.Held(conv) })
	return out
}

// converge waits until every well-behaved send is acknowledged and every
// client holds every stored message of its conversations, then checks the
// recorded history with check.Check against the store.
func (f *fleet) converge(t *testing.T) {
	t.Helper()
	waitFor(t, 20*time.Second, "every well-behaved send acknowledged", func() bool {
		for _, r := range f.all {
			if unacked(r) != 0 {
				return false
			}
		}
		return true
	})
	for _, r := range f.all {
		r.Do(func(c *client.Client, env client.Env) {
			for _, conv := range c.Convs() {
				_ = c.Sync(env, conv)
			}
		})
	}
	var msgs []store.Message
	waitFor(t, 15*time.Second, "every client holding every stored message", func() bool {
		msgs = f.tc.dump(t)
		return len(f.missing(msgs)) == 0
	})
	f.assertStored(t, msgs)
	for _, r := range f.all {
		r.Do(func(c *client.Client, env client.Env) { c.Finish(env) })
	}
	ops := f.rec.Ops()
	// Attackers wrote to conversations of their own; the checkers judge
	// the conversations the well-behaved clients took part in.
	convs := map[string]bool{}
	for _, op := range ops {
		convs[op.Conv] = true
	}
	var dump []store.Message
	for _, m := range msgs {
		if convs[m.ConvID] {
			dump = append(dump, m)
		}
	}
	verdict, err := check.Check(&check.History{Ops: ops}, check.Options{Dump: dump, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	t.Log(verdict.Line())
	if !verdict.Pass {
		for i, v := range verdict.Violations {
			if i == 10 {
				break
			}
			t.Errorf("violation of promise %d (%s) in %s: %s", v.Promise, v.Name, v.Conv, v.Message)
		}
		t.Fatalf("got verdict %s, want pass", verdict.Word())
	}
}

// missing lists (user, conv, seq) a running client does not hold.
func (f *fleet) missing(msgs []store.Message) []string {
	var out []string
	for _, r := range f.all {
		var user string
		r.Do(func(c *client.Client, _ client.Env) {
			if !c.Stopped() {
				user = c.Config().User
			}
		})
		if user == "" {
			continue
		}
		got := map[string]bool{}
		for _, m := range msgs {
			conv, err := wire.ParseConvID(m.ConvID)
			if err != nil {
				continue
			}
			if _, ok := conv.Participant(user); !ok {
				continue
			}
			if _, seen := got[m.ConvID]; !seen {
				got[m.ConvID] = true
				for _, h := range held(r, m.ConvID) {
					got[fmt.Sprintf("%s/%d", m.ConvID, h.Seq)] = true
				}
			}
			if !got[fmt.Sprintf("%s/%d", m.ConvID, m.Seq)] {
				out = append(out, fmt.Sprintf("%s %s %d", user, m.ConvID, m.Seq))
			}
		}
	}
	return out
}

// assertStored: every acknowledged send is stored once with its acked seq.
func (f *fleet) assertStored(t *testing.T, msgs []store.Message) {
	t.Helper()
	stored := map[string]store.Message{}
	for _, m := range msgs {
		key := m.ConvID + "/" + m.ClientMsgID
		if prev, dup := stored[key]; dup {
			t.Errorf("send %s stored twice: seqs %d and %d", key, prev.Seq, m.Seq)
		}
		stored[key] = m
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, seq := range f.acked {
		m, ok := stored[f.conv[id]+"/"+id]
		switch {
		case !ok:
			t.Errorf("acked send %s (seq %d) not in the store", id, seq)
		case m.Seq != seq:
			t.Errorf("acked send %s: got seq %d in the store, want the acked %d", id, m.Seq, seq)
		}
	}
	t.Logf("well-behaved clients: %d sends acked; %d messages stored in all", len(f.acked), len(msgs))
}

// raw is a hostile app connection that speaks frames by hand.
type raw struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	req  uint32
}

func dialRaw(t *testing.T, addr string) *raw {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, conn: c, r: bufio.NewReaderSize(c, 64<<10)}
}

// write sends m as a frame and returns its reqID.
func (c *raw) write(m proto.Message) uint32 {
	c.t.Helper()
	c.req++
	f, err := wire.EncodeMessage(c.req, m)
	if err != nil {
		c.t.Fatalf("encode: %v", err)
	}
	b, _ := wire.AppendFrame(nil, f)
	c.writeBytes(b)
	return c.req
}

func (c *raw) writeBytes(b []byte) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next reads one frame within timeout.
func (c *raw) next(timeout time.Duration) (wire.Frame, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	var h [4]byte
	if _, err := io.ReadFull(c.r, h[:]); err != nil {
		return wire.Frame{}, err
	}
	n := binary.BigEndian.Uint32(h[:])
	if n+4 > wire.FrameSizeMax {
		return wire.Frame{}, fmt.Errorf("server sent an oversized frame: %d", n)
	}
	buf := make([]byte, n+4)
	copy(buf, h[:])
	if _, err := io.ReadFull(c.r, buf[4:]); err != nil {
		return wire.Frame{}, err
	}
	f, _, err := wire.Decode(buf)
	return f, err
}

// login logs user in and waits for LOGIN_ACK.
func (c *raw) login(tok, device string) {
	c.t.Helper()
	c.write(&wire.Login{Token: tok, DeviceId: device})
	f, err := c.next(5 * time.Second)
	if err != nil || f.Op != wire.OpLoginAck {
		c.t.Fatalf("login: got %v %v (%s), want LOGIN_ACK", f.Op, err, errText(f))
	}
}

// closedAfter reads until the server closes the connection (EOF or reset)
// within timeout, returning the frames seen on the way.
func (c *raw) closedAfter(timeout time.Duration) ([]wire.Frame, error) {
	deadline := time.Now().Add(timeout)
	var got []wire.Frame
	for {
		f, err := c.next(time.Until(deadline))
		if err == nil {
			got = append(got, f)
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return got, fmt.Errorf("connection still open after %s", timeout)
		}
		return got, nil // EOF or reset: closed by the server
	}
}

// errorCodes lists the codes of the ERROR frames in fs.
func errorCodes(fs []wire.Frame) []wire.ErrorCode {
	var out []wire.ErrorCode
	for _, f := range fs {
		if f.Op == wire.OpError {
			var e wire.Error
			if proto.Unmarshal(f.Body, &e) == nil {
				out = append(out, e.Code)
			}
		}
	}
	return out
}

func errText(f wire.Frame) string {
	if f.Op != wire.OpError {
		return ""
	}
	var e wire.Error
	_ = proto.Unmarshal(f.Body, &e)
	return e.Code.String() + ": " + e.Message
}
