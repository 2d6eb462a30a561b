package main

import (
	"context"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/zzim/zzim/system/wire"
)

// dropPushes passes every frame from entry to the client except PUSH: its
// user receives nothing live, as when every push to it is lost.
type dropPushes struct {
	net.Conn
	in, out []byte
	buf     [4096]byte
}

func (d *dropPushes) Read(p []byte) (int, error) {
	for len(d.out) == 0 {
		f, n, err := wire.Decode(d.in)
		if err == nil {
			if f.Op != wire.OpPush {
				d.out = append(d.out, d.in[:n]...)
			}
			d.in = append(d.in[:0], d.in[n:]...)
			continue
		}
		if !errors.Is(err, wire.ErrShort) {
			return 0, err
		}
		m, err := d.Conn.Read(d.buf[:])
		d.in = append(d.in, d.buf[:m]...)
		if err != nil && m == 0 {
			return 0, err
		}
	}
	n := copy(p, d.out)
	d.out = d.out[n:]
	return n, nil
}

// TestSyncRecoversLostPushes: the odd users lose every push, so what is
// sent to them is acknowledged and stored but never delivered live; the
// after-run sync must deliver all of it (recovered, none lost) and the
// even users' messages must count live. It starts `zzim up` (in memory),
// so it runs only under PEERS_BENCH=1 like TestQuick.
func TestSyncRecoversLostPushes(t *testing.T) {
	if os.Getenv("PEERS_BENCH") == "" {
		t.Skip("set PEERS_BENCH=1 to run it (it builds and starts zzim)")
	}
	cfg, err := parseFlags([]string{"-users", "20", "-rates", "100", "-warm", "200ms", "-step", "1s", "-drain", "1s", "-sync-wait", "30s"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.workDir = t.TempDir()
	cfg.progress = newProgress()
	defer cfg.progress.close()
	zzimBin, _, err := buildBinaries(cfg.repo, cfg.binDir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := startZzim(ctx, zzimBin, cfg.workDir, rowMemory, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	tr := newTracker()
	const n = 20
	u, err := connectZzim(ctx, tr, srv.addrs, n, func(u int) func(context.Context, string, string) (net.Conn, error) {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
			if err != nil || u%2 == 0 {
				return c, err
			}
			return &dropPushes{Conn: c}, nil
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer u.close()
	step := runStep(ctx, cfg, tr, u, srv, 0, 100, n, "lost pushes")
	steps := []stepResult{step}
	steps[0].awaitedAtDrain = steps[0].track.missingAcked()
	rec := recoverAll(ctx, cfg, tr, u, steps)
	steps[0].classify()
	steps[0].recount(true)
	s := &steps[0]
	toOdd := int64(0)
	for i := range s.n {
		if (i/(n/2))%2 == 0 { // sent by 2p, to 2p+1: an odd user
			toOdd++
		}
	}
	t.Logf("offered %d acked %d delivered %d; awaited at the drain's end %d, by sync %d, late live %d, lost %d; sync %s (%s)",
		s.offered, s.acked, s.delivered, len(s.awaitedAtDrain), s.bySync, s.latePush, s.lost, rec.took, rec.ended)
	if s.acked != s.offered || s.delivered != s.offered || s.lost != 0 || s.dups != 0 || s.misdelivered != 0 {
		t.Fatalf("offered %d acked %d delivered %d lost %d dups %d misdelivered %d", s.offered, s.acked, s.delivered, s.lost, s.dups, s.misdelivered)
	}
	if int64(len(s.awaitedAtDrain)) != toOdd || s.bySync != toOdd {
		t.Fatalf("%d to the odd users: %d awaited at the drain's end, %d recovered by sync", toOdd, len(s.awaitedAtDrain), s.bySync)
	}
}
