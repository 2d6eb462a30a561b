package testdeps

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) {
	Setup()
	os.Exit(m.Run())
}

func TestSetupKeepsExplicitValues(t *testing.T) {
	t.Setenv("TESTCONTAINERS_HOST_OVERRIDE", "example")
	Setup()
	if got := os.Getenv("TESTCONTAINERS_HOST_OVERRIDE"); got != "example" {
		t.Errorf("host override: got %q, want %q", got, "example")
	}
	if got := os.Getenv("TESTCONTAINERS_RYUK_DISABLED"); got != "true" {
		t.Errorf("ryuk disabled: got %q, want %q", got, "true")
	}
}

func TestQuoteIdentifier(t *testing.T) {
	tests := []struct{ in, want string }{
		{"zzim_a", "`zzim_a`"},
		{"zzim`; DROP DATABASE zzim; --", "`zzim``; DROP DATABASE zzim; --`"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := quoteIdentifier(tt.in); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

// The tests below start the real images: each checks that the container
// serves what the helper promises, through a fresh client.

func TestMariaDB(t *testing.T) {
	ctx := context.Background()
	inst := StartMariaDB(ctx, t, MariaDBOptions{Direct: true})
	if !strings.Contains(strings.ToLower(inst.Version), "mariadb") {
		t.Errorf("version: got %q, want a MariaDB version", inst.Version)
	}
	for _, dsn := range []string{inst.DSN, inst.DirectDSN} {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatalf("open %s: %v", dsn, err)
		}
		defer db.Close()
		var flush int
		if err := db.QueryRowContext(ctx, "SELECT @@innodb_flush_log_at_trx_commit").Scan(&flush); err != nil {
			t.Fatalf("%s: %v", dsn, err)
		}
		if flush != 1 {
			t.Errorf("innodb_flush_log_at_trx_commit: got %d, want 1", flush)
		}
	}
	shard := CreateDatabase(ctx, t, inst.DSN, "zzim_shard1")
	db, err := sql.Open("mysql", shard)
	if err != nil {
		t.Fatalf("open %s: %v", shard, err)
	}
	defer db.Close()
	var name string
	if err := db.QueryRowContext(ctx, "SELECT DATABASE()").Scan(&name); err != nil || name != "zzim_shard1" {
		t.Errorf("database: got %q (%v), want zzim_shard1", name, err)
	}
}

func TestRedis(t *testing.T) {
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: Redis(ctx, t)})
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("set: %v", err)
	}
	if got, err := rdb.Get(ctx, "k").Result(); got != "v" || err != nil {
		t.Errorf("get: got %q, %v, want %q", got, err, "v")
	}
}

func TestNATS(t *testing.T) {
	ctx := context.Background()
	nc, err := nats.Connect(NATS(ctx, t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("x")
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := nc.Publish("x", []byte("hi")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(msg.Data) != "hi" {
		t.Errorf("got %v, %v, want hi", msg, err)
	}
}

// recorder is a testing.TB that records how a helper gave up instead of
// giving up itself.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                          {}
func (r *recorder) Skipf(format string, args ...any) { r.skipped = fmt.Sprintf(format, args...) }
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestMissingImage(t *testing.T) {
	tests := []struct {
		ci       string
		wantSkip bool
	}{
		{ci: "", wantSkip: true},
		{ci: "false", wantSkip: true},
		{ci: "true", wantSkip: false},
	}
	for _, tt := range tests {
		t.Run("CI="+tt.ci, func(t *testing.T) {
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			requireImage(context.Background(), r, "zzim/no-such-image:dev")
			gotSkip, gotFail := r.skipped != "", r.failed != ""
			if gotSkip != tt.wantSkip || gotFail == tt.wantSkip {
				t.Errorf("got skipped %q failed %q, want skip %v", r.skipped, r.failed, tt.wantSkip)
			}
			if msg := r.skipped + r.failed; !strings.Contains(msg, "zzim/no-such-image:dev") && !strings.Contains(msg, "docker unavailable") {
				t.Errorf("message %q names neither the image nor docker", msg)
			}
		})
	}
}
