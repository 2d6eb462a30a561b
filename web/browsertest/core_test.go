package browsertest

import (
	"context"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/zzim/zzim/web"
)

// coreJS exercises client.js in the browser without a server: messages fed
// out of order and twice, and sends answered by a scripted request function.
const coreJS = `(async () => {
  const { ChatClient } = await import('/client.js');
  const conv = 'p:alice:bob:l1';
  const out = {};

  // Ordering: a gap starts a sync and holds back what is ahead; duplicates drop.
  const c = new ChatClient({ user: 'alice', token: 't', device: 'd1' });
  const synced = [];
  c.requestSync = (cv) => synced.push(cv.id);
  const msg = (seq) => ({ conv_id: conv, seq: String(seq), sender_id: 'bob', client_msg_id: 'bob-x-' + seq, body: 'm' + seq });
  c.accept(msg(1), 'push');
  c.accept(msg(3), 'push');
  out.heldAfterGap = c.convs.get(conv).held.map((m) => m.seq);
  out.synced = synced;
  c.accept(msg(2), 'sync');
  c.accept(msg(2), 'push');
  c.accept(msg(1), 'sync');
  out.held = c.convs.get(conv).held.map((m) => m.seq);
  out.dups = c.stats.dups;

  // Sends: one in flight, ack_floor = first unacknowledged; a transient
  // error (409) resends from the first unacknowledged after a backoff.
  const saved = {};
  const storage = { getItem: (k) => saved[k] || null, setItem: (k, v) => { saved[k] = v; } };
  const s = new ChatClient({ user: 'alice', token: 't', storage, config: { backoffMinMs: 5, backoffMaxMs: 10 } });
  s.online = true;
  const calls = [];
  const answers = [{ status: 409, body: { code: 'OUT_OF_ORDER' } }, { status: 200, body: { seq: '1' } }, { status: 200, body: { seq: '2' } }];
  s.request = async (method, path, body) => {
    calls.push(path + ' ' + body.client_msg_id + ' cseq=' + body.cseq + ' floor=' + body.ack_floor);
    return answers.shift();
  };
  s.send(conv, 'x');
  s.send(conv, 'y');
  out.device = s.device;
  for (let i = 0; i < 100 && s.sends.length; i++) await new Promise((r) => setTimeout(r, 10));
  out.calls = calls.map((x) => x.replace(s.device, 'DEV'));
  out.ownHeld = s.convs.get(conv).held.map((m) => m.seq + ':' + m.body);
  out.saved = JSON.parse(saved['zzim:client:alice']);
  out.saved.device = out.saved.device === s.device;
  return out;
})()`

type coreResult struct {
	HeldAfterGap []int    `json:"heldAfterGap"`
	Synced       []string `json:"synced"`
	Held         []int    `json:"held"`
	Dups         int      `json:"dups"`
	Calls        []string `json:"calls"`
	OwnHeld      []string `json:"ownHeld"`
	Saved        struct {
		Device   bool  `json:"device"`
		NextCSeq int   `json:"nextCSeq"`
		Sends    []any `json:"sends"`
	} `json:"saved"`
}

// TestClientCore checks client.js's rules one by one in a real browser.
func TestClientCore(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	exe := needChromium(t)
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var exceptions exceptionLog
	tb := openTab(t, newBrowser(t, ctx, exe), true, "core", srv.URL+"/", &exceptions)
	got, err := chromedp.Run(tb.ctx, chromedp.Evaluate[coreResult](coreJS, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	const conv = "p:alice:bob:l1"
	checks := []struct {
		name      string
		got, want any
	}{
		{"held while a gap is open", got.HeldAfterGap, []int{1}},
		{"gap fill syncs", got.Synced, []string{conv}},
		{"held after the fill", got.Held, []int{1, 2, 3}},
		{"duplicates dropped", got.Dups, 2},
		{"requests", got.Calls, []string{
			"/v1/send alice-DEV-1 cseq=1 floor=1",
			"/v1/send alice-DEV-1 cseq=1 floor=1", // go-back-N: the same send again
			"/v1/send alice-DEV-2 cseq=2 floor=2",
		}},
		{"own messages held under their seq", got.OwnHeld, []string{"1:x", "2:y"}},
		{"device kept", got.Saved.Device, true},
		{"cseq kept", got.Saved.NextCSeq, 2},
		{"no unacknowledged sends kept", len(got.Saved.Sends), 0},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("got %v, want %v", c.got, c.want)
			}
		})
	}
	if ex := exceptions.all(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions: %v", ex)
	}
}
