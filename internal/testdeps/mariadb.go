package testdeps

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
)

// The account and database the zzim/mariadb image creates (docker/mariadb/entrypoint.sh).
// The user may also create databases named zzim*.
const (
	mariaDBUser     = "zzim"
	mariaDBPassword = "zzim"
	mariaDBDatabase = "zzim"
	mariaDBPort     = "3306/tcp"
	// mariaDBReadyLine is what mysqld logs once it accepts connections.
	mariaDBReadyLine = "ready for connections"
)

// MariaDBOptions shapes a MariaDB container.
type MariaDBOptions struct {
	// Direct also attaches the container to a private network created for
	// the test and fills MariaDBInstance.DirectDSN with its IP, bypassing
	// docker-proxy (which roughly halves throughput to a container).
	Direct bool
}

// MariaDBInstance is a running MariaDB container.
type MariaDBInstance struct {
	// DSN reaches the database zzim through the published port (docker-proxy).
	DSN string
	// DirectDSN reaches it at the container's IP; empty unless Options.Direct.
	DirectDSN string
	// Version is the server's VERSION().
	Version   string
	Container *testcontainers.DockerContainer
}

// MariaDB starts a MariaDB container for t and returns a DSN for the
// database zzim (go-sql-driver/mysql format, through the published port).
// The container is removed when t ends.
func MariaDB(ctx context.Context, t testing.TB) string {
	t.Helper()
	return StartMariaDB(ctx, t, MariaDBOptions{}).DSN
}

// StartMariaDB starts a MariaDB container for t with opts.
func StartMariaDB(ctx context.Context, t testing.TB, opts MariaDBOptions) MariaDBInstance {
	t.Helper()
	requireImage(ctx, t, MariaDBImage)
	custom := []testcontainers.ContainerCustomizer{
		testcontainers.WithExposedPorts(mariaDBPort),
		testcontainers.WithWaitStrategy(logWait(mariaDBReadyLine)),
	}
	if opts.Direct {
		custom = append(custom, network.WithNetwork([]string{"mariadb"}, privateNetwork(ctx, t)))
	}
	ctr := run(ctx, t, MariaDBImage, custom...)
	endpoint, err := ctr.PortEndpoint(ctx, mariaDBPort, "")
	if err != nil {
		t.Fatalf("testdeps: mariadb endpoint: %v", err)
	}
	inst := MariaDBInstance{DSN: MariaDBDSN(endpoint, mariaDBDatabase), Container: ctr}
	if opts.Direct {
		ip, err := ctr.ContainerIP(ctx)
		if err != nil || ip == "" {
			t.Fatalf("testdeps: mariadb container ip: got %q, %v", ip, err)
		}
		inst.DirectDSN = MariaDBDSN(net.JoinHostPort(ip, "3306"), mariaDBDatabase)
	}
	if err := probe(ctx, "mariadb", func(ctx context.Context) error {
		inst.Version, err = mariaDBVersion(ctx, inst.DSN)
		return err
	}); err != nil {
		t.Fatalf("testdeps: %v", err)
	}
	return inst
}

// MariaDBDSN is the DSN of database db at addr for the image's account.
func MariaDBDSN(addr, db string) string {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd = mariaDBUser, mariaDBPassword
	cfg.Net, cfg.Addr, cfg.DBName = "tcp", addr, db
	return cfg.FormatDSN()
}

// CreateDatabase creates database name (it must start with "zzim") on the
// server dsn points at, and returns the DSN for it: shards in one container.
func CreateDatabase(ctx context.Context, t testing.TB, dsn, name string) string {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatalf("testdeps: parse dsn: %v", err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatalf("testdeps: open: %v", err)
	}
	defer db.Close()
	// An identifier cannot be a placeholder; QuoteIdentifier-style quoting
	// with doubled backticks keeps any name one identifier.
	if _, err := db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdentifier(name)+
		" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"); err != nil {
		t.Fatalf("testdeps: create database %s: %v", name, err)
	}
	cfg.DBName = name
	return cfg.FormatDSN()
}

func quoteIdentifier(name string) string {
	out := []byte{'`'}
	for i := 0; i < len(name); i++ {
		if name[i] == '`' {
			out = append(out, '`')
		}
		out = append(out, name[i])
	}
	return string(append(out, '`'))
}

func mariaDBVersion(ctx context.Context, dsn string) (string, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return "", fmt.Errorf("open: %w", err)
	}
	defer db.Close()
	var version string
	if err := db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version); err != nil {
		return "", fmt.Errorf("select version: %w", err)
	}
	return version, nil
}
