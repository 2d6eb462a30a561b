package sim

import (
	"log/slog"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/zzim/zzim/check"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/wire"
)

// conn is one client connection: a TCP connection to entry, or one HTTP
// request to httpentry. Each direction is FIFO.
type conn struct {
	id       node.ConnID
	client   int32 // -1: the simulated platform service
	entry    int32
	entryInc node.Incarnation
	http     bool
	httpReq  client.ReqID
	lastUp   int64 // client → entry
	lastDown int64 // entry → client
}

// simClient is one reference client and its connection state.
type simClient struct {
	idx  int32
	user string
	drv  ClientDriver
	env  *clientEnv
	// gen is the id of the client's latest TCP connection: events for an
	// older one are dropped.
	gen  uint64
	conn *conn
	// offlineUntil: the client's network is down (churn) until then.
	offlineUntil int64
	longPoll     bool
	http         string   // httpentry address (long-poll clients)
	convs        []string // conversations the workload gives it
	// inactive: the client's user is not in Workload.KeepUsers; it never starts.
	inactive bool
}

// clientEnv is client.Env for one client.
type clientEnv struct {
	s   *sim
	c   *simClient
	rnd *rand.Rand
}

var _ client.Env = (*clientEnv)(nil)

func (e *clientEnv) Now() time.Time    { return epoch.Add(time.Duration(e.s.now)) }
func (e *clientEnv) Rand() *rand.Rand  { return e.rnd }
func (e *clientEnv) Log() *slog.Logger { return e.s.discard }
func (e *clientEnv) Record(op check.Op) {
	e.s.recorder.Add(op)
}

func (e *clientEnv) After(d time.Duration, tag any) client.TimerID {
	s := e.s
	id := s.id()
	slot := s.schedule(s.now+int64(max(d, 0)), event{kind: evClientTimer, target: e.c.idx, a: id, p: tag})
	s.clientTimers[id] = timerRef{owner: e.c.idx, slot: slot}
	return client.TimerID(id)
}

func (e *clientEnv) Cancel(id client.TimerID) {
	if ref, ok := e.s.clientTimers[uint64(id)]; ok && ref.owner == e.c.idx {
		delete(e.s.clientTimers, uint64(id))
		e.s.cancelTimer(evClientTimer, uint64(id), ref)
	}
}

// clientDelay draws one client-link latency.
func (s *sim) clientDelay() int64 {
	o := &s.cfg.ClientNetwork
	return latency(s.net, o.DelayMin, o.DelayMean)
}

// Dial opens a TCP connection: Connected after a round trip, or
// Disconnected when the entry is down, cut off, or the client is offline.
func (e *clientEnv) Dial(addr string) {
	s, c := e.s, e.c
	if c.conn != nil {
		s.dropConn(c.conn, true, "redial")
	}
	id := node.ConnID(s.id())
	c.gen = uint64(id)
	idx, ok := s.entryIndex(addr, node.RoleEntry)
	d := s.clientDelay()
	if !ok || !s.instances[idx].up || s.faults.clientsCut(idx) || c.offlineUntil > s.now {
		s.obs.dialsRefused++
		s.schedule(s.now+2*d, event{kind: evClient, target: c.idx, inc: c.gen,
			p: client.Disconnected{Reason: "connection refused"}})
		return
	}
	in := s.instances[idx]
	cn := &conn{id: id, client: c.idx, entry: idx, entryInc: in.inc, lastUp: s.now + d}
	s.conns[id] = cn
	c.conn = cn
	s.obs.dials++
	s.schedule(s.now+d, event{kind: evNode, target: idx, inc: uint64(in.inc),
		p: node.ClientConnect{Conn: id, Remote: "client-" + itoa(int(c.idx)), Accepted: epoch.Add(time.Duration(s.now + d + in.skew))}})
	cn.lastDown = s.now + 2*d
	s.schedule(cn.lastDown, event{kind: evClient, target: c.idx, inc: c.gen, p: client.Connected{}})
}

func (e *clientEnv) Write(f wire.Frame) {
	s, cn := e.s, e.c.conn
	if cn == nil {
		return // the connection is gone: Disconnected is on its way
	}
	at := max(s.now+s.clientDelay(), cn.lastUp)
	cn.lastUp = at
	s.schedule(at, event{kind: evNode, target: cn.entry, inc: uint64(cn.entryInc),
		p: node.ClientFrame{Conn: cn.id, Frame: f}})
}

func (e *clientEnv) Hangup() {
	s, c := e.s, e.c
	if c.conn == nil {
		s.schedule(s.now, event{kind: evClient, target: c.idx, inc: c.gen, p: client.Disconnected{Reason: "hangup"}})
		return
	}
	s.dropConn(c.conn, true, "hangup")
	s.schedule(s.now, event{kind: evClient, target: c.idx, inc: c.gen, p: client.Disconnected{Reason: "hangup"}})
}

// HTTP sends one request to httpentry; the answer or a timeout (status 0)
// comes back as HTTPResponse.
func (e *clientEnv) HTTP(method, path, token string, body []byte, timeout time.Duration) client.ReqID {
	s, c := e.s, e.c
	req := client.ReqID(s.id())
	header := map[string]string{}
	if token != "" {
		header["Authorization"] = "Bearer " + token
	}
	if c.offlineUntil > s.now {
		s.schedule(s.now+s.clientDelay(), event{kind: evClient, target: c.idx,
			p: client.HTTPResponse{Req: req, Status: 0}})
		return req
	}
	s.httpRequest(c.idx, req, method, path, header, body, timeout, e.c.httpAddr())
	return req
}

func (c *simClient) httpAddr() string { return c.http }

// httpRequest opens one HTTP exchange from client ci (or the platform
// service, ci = -1) to httpentry addr.
func (s *sim) httpRequest(ci int32, req client.ReqID, method, path string, header map[string]string,
	body []byte, timeout time.Duration, addr string) {
	idx, ok := s.entryIndex(addr, node.RoleHTTPEntry)
	d := s.clientDelay()
	if !ok || !s.instances[idx].up || s.faults.clientsCut(idx) {
		s.httpAnswer(ci, req, 0, nil, s.now+2*d)
		return
	}
	in := s.instances[idx]
	id := node.ConnID(s.id())
	cn := &conn{id: id, client: ci, entry: idx, entryInc: in.inc, http: true, httpReq: req, lastUp: s.now + d}
	s.conns[id] = cn
	p, query := splitQuery(path)
	s.schedule(s.now+d, event{kind: evNode, target: idx, inc: uint64(in.inc),
		p: node.HTTPRequest{Conn: id, Method: method, Path: p, Query: query, Header: header, Body: body}})
	if timeout <= 0 {
		timeout = s.cfg.Deps.HTTPTimeout
	}
	s.schedule(s.now+int64(timeout), event{kind: evHTTPTimeout, target: ci, a: uint64(id)})
}

// httpAnswer delivers an HTTP response (status 0: none) to its requester.
func (s *sim) httpAnswer(ci int32, req client.ReqID, status int, body []byte, at int64) {
	if ci < 0 {
		s.schedule(at, event{kind: evPlatformReply, target: ci, a: uint64(req), b: uint64(status)})
		return
	}
	s.schedule(at, event{kind: evClient, target: ci, p: client.HTTPResponse{Req: req, Status: status, Body: body}})
}

// splitQuery splits a request target into its path and query. It parses
// the query straight into the first value per key, as url.ParseQuery then
// taking v[0] would, without building url.Values first; a query that
// ParseQuery would reject in any part gives no query at all.
func splitQuery(path string) (string, map[string]string) {
	i := strings.IndexByte(path, '?')
	if i < 0 {
		return path, nil
	}
	var q map[string]string
	for rest := path[i+1:]; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if strings.IndexByte(pair, ';') >= 0 {
			return path[:i], nil
		}
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return path[:i], nil
		}
		if q == nil {
			q = make(map[string]string, 4)
		}
		if _, dup := q[k]; !dup {
			q[k] = v
		}
	}
	if q == nil {
		q = map[string]string{}
	}
	return path[:i], q
}

// entryIndex resolves a client-facing address ("entry-1") of role.
func (s *sim) entryIndex(addr string, role node.Role) (int32, bool) {
	a, err := node.ParseAddr(addr)
	if err != nil || a.Role != role {
		return 0, false
	}
	idx, ok := s.byAddr[a]
	return idx, ok
}

// connOf finds a connection that instance in may write to.
func (s *sim) connOf(in *instance, c node.ConnID) *conn {
	cn := s.conns[c]
	if cn == nil || cn.entry != in.idx || cn.entryInc != in.inc {
		return nil
	}
	return cn
}

func (s *sim) toClient(in *instance, c node.ConnID, f wire.Frame) {
	cn := s.connOf(in, c)
	if cn == nil {
		return
	}
	if cn.http {
		s.httpReply(in, c, 200, f.Body)
		return
	}
	at := max(s.now+s.clientDelay(), cn.lastDown)
	cn.lastDown = at
	s.schedule(at, event{kind: evClient, target: cn.client, inc: uint64(cn.id), p: client.FrameIn{Frame: f}})
}

// closeByServer: entry closed a connection. Frames already written arrive
// first; then the client sees Disconnected and entry sees ClientDisconnect.
func (s *sim) closeByServer(in *instance, c node.ConnID) {
	cn := s.connOf(in, c)
	if cn == nil {
		return
	}
	delete(s.conns, c)
	if cn.http {
		s.httpAnswer(cn.client, cn.httpReq, 0, nil, s.now+s.clientDelay())
		return
	}
	if cl := s.clients[cn.client]; cl.conn == cn {
		cl.conn = nil
	}
	at := max(s.now+s.clientDelay(), cn.lastDown)
	s.schedule(at, event{kind: evClient, target: cn.client, inc: uint64(cn.id), p: client.Disconnected{Reason: "closed by server"}})
	s.schedule(s.now, event{kind: evNode, target: in.idx, inc: uint64(in.inc),
		p: node.ClientDisconnect{Conn: c, Reason: "closed"}})
}

func (s *sim) httpReply(in *instance, c node.ConnID, status int, body []byte) {
	cn := s.connOf(in, c)
	if cn == nil || !cn.http {
		return
	}
	delete(s.conns, c)
	s.httpAnswer(cn.client, cn.httpReq, status, body, s.now+s.clientDelay())
}

func (s *sim) httpTimeout(c node.ConnID) {
	cn := s.conns[c]
	if cn == nil {
		return
	}
	delete(s.conns, c)
	s.obs.httpTimeouts++
	s.httpAnswer(cn.client, cn.httpReq, 0, nil, s.now)
	s.schedule(s.now+s.clientDelay(), event{kind: evNode, target: cn.entry, inc: uint64(cn.entryInc),
		p: node.HTTPCanceled{Conn: c}})
}

// dropConn ends a TCP connection from the client's side (hangup, churn):
// entry hears ClientDisconnect after the frames already sent.
func (s *sim) dropConn(cn *conn, tellEntry bool, reason string) {
	delete(s.conns, cn.id)
	if cn.client >= 0 && s.clients[cn.client].conn == cn {
		s.clients[cn.client].conn = nil
	}
	if tellEntry {
		at := max(s.now+s.clientDelay(), cn.lastUp)
		s.schedule(at, event{kind: evNode, target: cn.entry, inc: uint64(cn.entryInc),
			p: node.ClientDisconnect{Conn: cn.id, Reason: reason}})
	}
}

// connsAt lists the connections of an instance in id order (map order
// must never reach the schedule).
func (s *sim) connsAt(idx int32) []*conn {
	var out []*conn
	for _, cn := range s.conns {
		if cn.entry == idx {
			out = append(out, cn)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// dropConnsOf: an entry crashed or its clients were cut off: every client
// connection breaks (clients see Disconnected, HTTP requests status 0).
// With tellEntry (a cut, not a crash) entry hears ClientDisconnect too.
func (s *sim) disconnectAll(idx int32, tellEntry bool) {
	for _, cn := range s.connsAt(idx) {
		at := s.now + int64(s.cfg.Deps.LinkDownDetect)
		if cn.http {
			delete(s.conns, cn.id)
			s.httpAnswer(cn.client, cn.httpReq, 0, nil, at)
			if tellEntry {
				s.schedule(at, event{kind: evNode, target: cn.entry, inc: uint64(cn.entryInc), p: node.HTTPCanceled{Conn: cn.id}})
			}
			continue
		}
		s.dropConn(cn, tellEntry, "link broken")
		s.obs.clientsDisconnected++
		s.schedule(at, event{kind: evClient, target: cn.client, inc: uint64(cn.id), p: client.Disconnected{Reason: "connection reset"}})
	}
}

func (s *sim) dropConnsOf(in *instance) { s.disconnectAll(in.idx, false) }

// deliverClient hands a client event to its client.
func (s *sim) deliverClient(e *event) {
	c := s.clients[e.target]
	if e.kind == evClientTimer {
		ref, live := s.clientTimers[e.a]
		if !live || ref.owner != e.target {
			return
		}
		delete(s.clientTimers, e.a)
		cev := client.Event(client.Timer{ID: client.TimerID(e.a), Tag: e.p})
		s.trace.add(s.now, -1-e.target, e.kind, digestClientEvent(cev))
		c.drv.Handle(c.env, cev)
		return
	} else if e.inc != 0 && e.inc != c.gen {
		s.trace.add(s.now, -1-e.target, e.kind, 0xdead)
		return // for a connection the client no longer has
	}
	cev := e.p.(client.Event)
	s.trace.add(s.now, -1-e.target, e.kind, digestClientEvent(cev))
	c.drv.Handle(c.env, cev)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}
