package browsertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/zzim/zzim/system/cluster"
	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/node"
	"github.com/zzim/zzim/system/store/memstore"
	"github.com/zzim/zzim/web"
)

// Bounds of the test: it must stay well under a minute on two shared cores.
const (
	testTimeout = 90 * time.Second
	waitMax     = 20 * time.Second // one condition in the page
	downFor     = 1500 * time.Millisecond
	phoneWidth  = 360
	phoneHeight = 740
)

var httpentry0 = node.Addr{Role: node.RoleHTTPEntry, Slot: 0}

// chromiumPath finds a browser: $ZZIM_CHROMIUM, then the usual names.
func chromiumPath() string {
	if p := os.Getenv("ZZIM_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func needChromium(t *testing.T) string {
	t.Helper()
	p := chromiumPath()
	if p != "" {
		return p
	}
	const msg = "no Chromium found (apt-get install -y chromium, or set ZZIM_CHROMIUM): browser test not run"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// outDir is where screenshots stay after the test: t.TempDir is removed.
func outDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ZZIM_TEST_OUT")
	if dir == "" {
		dir = filepath.Join("testdata", "out")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		t.Fatalf("output directory: %v", err)
	}
	return abs
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startCluster runs every role in this process with in-memory dependencies,
// the web client and the dev login on httpentry's listener, as `zzim up`
// does. httpentry listens on a fixed address so a restart keeps it.
func startCluster(t *testing.T) (*cluster.Local, string) {
	t.Helper()
	secret := []byte("browser-test-secret")
	cfg := cluster.Config{
		Topology: map[node.Role]int{
			node.RoleEntry: 1, node.RoleHTTPEntry: 1, node.RoleLogic: 2, node.RoleExtLogic: 1, node.RoleDas: 1,
		},
		Secret: secret, LogicTimeout: time.Second, DasTimeout: time.Second,
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("ZZIM_WEB_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	addr := freeAddr(t)
	deps := live.Deps{
		Store: memstore.New(memstore.Options{}), Presence: live.NewMemPresence(),
		Queue: live.NewMemQueue(), Registry: live.NewMemRegistry(),
	}
	l, err := cluster.StartLocal(cfg, cluster.LocalOptions{
		HTTPListen: map[node.Addr]string{httpentry0: addr},
		HTTPExtra:  web.Routes(secret, true),
		Deps:       deps, Logger: log,
	})
	if err != nil {
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() { l.Shutdown(context.Background(), 0) })
	ready := l.ReadyCheck()
	deadline := time.Now().Add(10 * time.Second)
	for ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("cluster not ready after 10s: %v", ready(context.Background()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return l, "http://" + addr
}

// tab is one browser tab running the page as one user.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// newBrowser starts headless Chromium and returns its first tab's context.
func newBrowser(t *testing.T, ctx context.Context, exe string) context.Context {
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(exe),
		chromedp.NoSandbox, // tests run as root in containers
		chromedp.WindowSize(phoneWidth, phoneHeight),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	return bctx
}

// openTab opens the page in a new tab (parent is the browser's first tab,
// or nil to use it), at a phone's size, and fails the test on any uncaught
// JavaScript exception.
func openTab(t *testing.T, parent context.Context, reuse bool, name, url string, exceptions *exceptionLog) *tab {
	ctx := parent
	if !reuse {
		var cancel context.CancelFunc
		ctx, cancel = chromedp.NewContext(parent)
		t.Cleanup(cancel)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			exceptions.add(name, e.ExceptionDetails)
		}
	}); err != nil {
		t.Fatalf("%s: listen: %v", name, err)
	}
	err := chromedp.Do(ctx,
		chromedp.EmulateViewport(phoneWidth, phoneHeight, chromedp.EmulateScale(2), chromedp.EmulatePortrait, chromedp.EmulateMobile),
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS("#login-form")),
	)
	if err != nil {
		t.Fatalf("%s: open %s: %v", name, url, err)
	}
	return &tab{t: t, name: name, ctx: ctx}
}

type exceptionLog struct {
	mu   sync.Mutex
	list []string
}

func (l *exceptionLog) add(tab string, d *runtime.ExceptionDetails) {
	msg := d.Text
	if d.Exception != nil && d.Exception.Description != "" {
		msg += " " + d.Exception.Description
	}
	l.mu.Lock()
	l.list = append(l.list, fmt.Sprintf("%s: %s (%s:%d)", tab, msg, d.URL, d.LineNumber+1))
	l.mu.Unlock()
}

func (l *exceptionLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.list)
}

func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, waitMax)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %s: %v", tb.name, what, err)
	}
}

func eval[T any](tb *tab, js string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("%s: evaluate %s: %v", tb.name, js, err)
	}
	return v
}

// waitJS polls a boolean expression in the page until it holds.
func (tb *tab) waitJS(what, js string) {
	tb.t.Helper()
	deadline := time.Now().Add(waitMax)
	for !eval[bool](tb, js) {
		if time.Now().After(deadline) {
			tb.t.Fatalf("%s: timed out after %s waiting for %s\nmessages: %v\nstatus: %s", tb.name, waitMax, what,
				tb.messages(), eval[string](tb, `document.getElementById('status').dataset.state + ' ' + document.getElementById('status').title`))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tb *tab) login(user string) {
	tb.t.Helper()
	tb.do("log in",
		chromedp.SetValue(chromedp.CSS("#login-user"), user),
		chromedp.Click(chromedp.CSS("#login-button")),
		chromedp.WaitVisible(chromedp.CSS("#new-form")),
	)
	tb.waitJS("online", `document.getElementById('status').dataset.state === 'online'`)
}

// send types body into the composer and taps Send, as a person would.
func (tb *tab) send(body string) {
	tb.t.Helper()
	tb.do("send "+body,
		chromedp.SetValue(chromedp.CSS("#compose"), body),
		chromedp.Click(chromedp.CSS("#send")),
	)
	// The page queued it: it shows, in some state, at once.
	tb.waitJS("message "+body+" shown", fmt.Sprintf(
		`[...document.querySelectorAll('#messages li.msg .body')].some(e => e.textContent === %q)`, body))
}

// shown is one message as the DOM shows it.
type shown struct {
	Seq    string `json:"seq"`
	CMID   string `json:"cmid"`
	Sender string `json:"sender"`
	State  string `json:"state"`
	Body   string `json:"body"`
}

func (s shown) String() string {
	return fmt.Sprintf("#%s %s %q [%s]", s.Seq, s.Sender, s.Body, s.State)
}

func (tb *tab) messages() []shown {
	tb.t.Helper()
	return eval[[]shown](tb, `[...document.querySelectorAll('#messages li.msg')].map(li => ({
		seq: li.dataset.seq || '', cmid: li.dataset.cmid || '', sender: li.dataset.sender || '',
		state: li.dataset.state || '', body: li.querySelector('.body').textContent }))`)
}

func (tb *tab) screenshot(dir, file string) {
	tb.t.Helper()
	png, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("%s: screenshot: %v", tb.name, err)
	}
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatalf("write %s: %v", path, err)
	}
	tb.t.Logf("screenshot (%s, %dx%d CSS px at 2x): %s", tb.name, phoneWidth, phoneHeight, path)
}

// settledJS holds when the open conversation shows want messages, all
// stored (a seq each) and none waiting to be sent.
func settledJS(want int) string {
	return fmt.Sprintf(`(() => { const ms = [...document.querySelectorAll('#messages li.msg')];
		return ms.length === %d && ms.every(li => li.dataset.seq && (li.dataset.state === 'acked' || li.dataset.state === 'received')); })()`, want)
}

// TestTwoTabsChatAcrossHTTPEntryRestart: a buyer and a seller chat in two
// tabs; httpentry is killed mid-conversation while both keep typing, then
// restarted on the same address. Both tabs must end with every message
// once, in the same seq order, each sender's messages in the order sent.
func TestTwoTabsChatAcrossHTTPEntryRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	exe := needChromium(t)
	dir := outDir(t)
	t.Logf("screenshots go to %s", dir)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()

	l, base := startCluster(t)
	// Short backoffs and polls so the restart is noticed within a second or two.
	url := base + "/?backoffMaxMs=800&pollWaitMs=10000&requestTimeoutMs=3000&syncIntervalMaxMs=5000"
	var exceptions exceptionLog
	browser := newBrowser(t, ctx, exe)
	buyer := openTab(t, browser, true, "buyer", url, &exceptions)
	seller := openTab(t, browser, false, "seller", url, &exceptions)

	buyer.login("alice")
	seller.login("bob")
	const conv = "p:alice:bob:bike-42"
	buyer.do("start a conversation",
		chromedp.SetValue(chromedp.CSS("#new-peer"), "bob"),
		chromedp.SetValue(chromedp.CSS("#new-listing"), "bike-42"),
		chromedp.Click(chromedp.CSS("#new-open")),
		chromedp.WaitVisible(chromedp.CSS("#composer")),
	)
	var sent []shown // what each person typed, in order
	say := func(tb *tab, user, body string) {
		tb.send(body)
		sent = append(sent, shown{Sender: user, Body: body})
	}

	say(buyer, "alice", "Hi! Is the bike still for sale?")
	// The seller learns of the conversation by long-poll: it appears in the
	// list with one unread message.
	seller.waitJS("conversation listed with 1 unread", fmt.Sprintf(
		`(() => { const li = document.querySelector('li.conv[data-conv=%q]'); return !!li && li.querySelector('.badge').dataset.unread === '1'; })()`, conv))
	seller.do("open the conversation", chromedp.Click(chromedp.CSS(fmt.Sprintf("li.conv[data-conv=%q]", conv))), chromedp.WaitVisible(chromedp.CSS("#composer")))
	say(seller, "bob", "Yes, it is. 80 euros.")
	say(buyer, "alice", "Would you take 70?")
	say(buyer, "alice", "I can pick it up today.")
	say(seller, "bob", "75 and it's yours.")
	buyer.waitJS("first messages settled", settledJS(len(sent)))
	seller.waitJS("first messages settled", settledJS(len(sent)))

	// httpentry dies with polls parked and sends on their way; both keep typing.
	l.Kill(httpentry0)
	say(buyer, "alice", "Deal. Where do we meet?")
	say(seller, "bob", "At the station, 6 pm?")
	say(buyer, "alice", "OK, see you there.")
	buyer.waitJS("a send shown as retrying", `!!document.querySelector('#messages li.msg[data-state="retrying"]')`)
	seller.waitJS("a send shown as retrying", `!!document.querySelector('#messages li.msg[data-state="retrying"]')`)
	buyer.screenshot(dir, "chat-buyer-reconnecting.png")
	time.Sleep(downFor)
	if err := l.Restart(httpentry0); err != nil {
		t.Fatalf("restart httpentry: %v", err)
	}

	say(seller, "bob", "See you! Bring cash please.")
	say(buyer, "alice", "Will do. Thanks!")
	buyer.waitJS("all messages settled", settledJS(len(sent)))
	seller.waitJS("all messages settled", settledJS(len(sent)))

	got := map[string][]shown{"buyer": buyer.messages(), "seller": seller.messages()}
	checkConversation(t, sent, got)
	for _, tb := range []*tab{buyer, seller} {
		if logins := eval[int](tb, `window.zzimClient.stats.logins`); logins < 2 {
			t.Errorf("%s: got %d logins, want at least 2 (a new session after the restart)", tb.name, logins)
		}
	}
	buyer.screenshot(dir, "chat-buyer.png")
	seller.screenshot(dir, "chat-seller.png")

	// Reading marks the conversation read: back in the list, no unread badge.
	for _, tb := range []*tab{buyer, seller} {
		tb.do("back to the list", chromedp.Click(chromedp.CSS("#back")), chromedp.WaitVisible(chromedp.CSS("#new-form")))
		tb.waitJS("conversation read", fmt.Sprintf(
			`document.querySelector('li.conv[data-conv=%q] .badge').dataset.unread === '0'`, conv))
	}
	seller.screenshot(dir, "list-seller.png")
	if ex := exceptions.all(); len(ex) > 0 {
		t.Errorf("uncaught JavaScript exceptions:\n%s", strings.Join(ex, "\n"))
	}
}

// checkConversation: each tab shows every sent message exactly once, seqs
// 1..n in order, the same list in both tabs, and each sender's messages in
// the order they were typed.
func checkConversation(t *testing.T, sent []shown, got map[string][]shown) {
	t.Helper()
	for name, msgs := range got {
		if len(msgs) != len(sent) {
			t.Errorf("%s: got %d messages, want %d:\n%v", name, len(msgs), len(sent), msgs)
			continue
		}
		count := map[string]int{}
		last := map[string]int{}
		for i, m := range msgs {
			if want := fmt.Sprint(i + 1); m.Seq != want {
				t.Errorf("%s: message %d has seq %s, want %s", name, i, m.Seq, want)
			}
			count[m.Body]++
			for j, s := range sent {
				if s.Body == m.Body {
					if s.Sender != m.Sender {
						t.Errorf("%s: %q shown from %s, want %s", name, m.Body, m.Sender, s.Sender)
					}
					if j < last[m.Sender] {
						t.Errorf("%s: %s's messages out of the order typed at %q", name, m.Sender, m.Body)
					}
					last[m.Sender] = j
				}
			}
		}
		for _, s := range sent {
			if count[s.Body] != 1 {
				t.Errorf("%s: %q shown %d times, want once", name, s.Body, count[s.Body])
			}
		}
	}
	b, s := got["buyer"], got["seller"]
	if len(b) == len(s) {
		for i := range b {
			if b[i].Seq != s[i].Seq || b[i].Body != s[i].Body || b[i].Sender != s[i].Sender || b[i].CMID != s[i].CMID {
				t.Errorf("message %d: buyer shows %v, seller shows %v", i, b[i], s[i])
			}
		}
	}
}
