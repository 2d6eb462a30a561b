package chaos

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/node"
)

func TestMain(m *testing.M) {
	testdeps.Setup()
	os.Exit(m.Run())
}

// requireDocker skips t without Docker or the images, except under
// CI=true, where that is a failure.
func requireDocker(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := newDocker(ctx)
	if err == nil {
		err = d.requireImages(ctx, ZzimImage, ToxiproxyImage, testdeps.MariaDBImage, testdeps.RedisImage, testdeps.NATSImage)
		d.close()
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("chaos: %v (CI=true: a missing dependency is a failure)", err)
	}
	t.Skipf("chaos: %v (skipped; with CI=true this fails)", err)
}

// TestEnvUpDown builds a small environment, kills and restarts a logic,
// and checks that Close leaves no container or network of the run.
func TestEnvUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts containers")
	}
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := NewEnv(ctx, EnvConfig{Topology: map[node.Role]int{node.RoleEntry: 1, node.RoleLogic: 2, node.RoleDas: 1, node.RoleExtLogic: 1},
		Secret: "chaos-test"})
	if err != nil {
		t.Fatalf("NewEnv: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			env.Close()
		}
	}()
	if len(env.Entries) != 1 {
		t.Fatalf("got %d entries, want 1", len(env.Entries))
	}
	if err := env.Kill(ctx, "logic-1"); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if err := env.Start(ctx, "logic-1"); err != nil {
		t.Fatalf("start after kill: %v", err)
	}
	if err := env.Pause(ctx, "logic-0"); err != nil {
		t.Fatalf("pause: %v", err)
	}
	run := env.Run
	closed = true
	if err := env.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	d, err := newDocker(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	c, n, err := d.removeRun(ctx, run)
	if err != nil || c != 0 || n != 0 {
		t.Fatalf("after Close: got %d containers, %d networks left (err %v), want none", c, n, err)
	}
}
