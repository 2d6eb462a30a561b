package hardening

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/zzim/zzim/internal/testdeps"
	"github.com/zzim/zzim/system/client"
	"github.com/zzim/zzim/system/store/mysqlstore"
)

func TestMain(m *testing.M) {
	testdeps.Setup()
	os.Exit(m.Run())
}

// TestHostileStringsMySQL sends the hostile bodies over the real TCP path
// into MariaDB (mysqlstore): they come back from the database unchanged,
// and the oversized and invalid ones are refused before it. Skipped without
// Docker or the zzim/mariadb image (a failure when CI=true).
func TestHostileStringsMySQL(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a MariaDB container")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dsn := testdeps.MariaDB(ctx, t)
	st, err := mysqlstore.Open(ctx, mysqlstore.Config{DSNs: []string{dsn}})
	if err != nil {
		t.Fatalf("mysqlstore: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	tc := startClusterOn(t, st)
	f := newFleet(t, tc)
	f.start(t, "w1", client.TCP) // the recipient of the hostile bodies
	hostileStrings(t, tc, f)
	f.converge(t)
}
