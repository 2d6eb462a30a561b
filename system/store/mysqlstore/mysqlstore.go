// Package mysqlstore is the MySQL/MariaDB (and, untested, TiDB) implementation
// of store.Store, used by das in production.
//
// Group commit: one Append is one transaction per shard at READ COMMITTED
// with a constant number of statements whatever the batch size, because
// round trips, not fsync, limit a database here (measured: 100 appends as 300
// statements ran no faster than 100 one-append transactions; as 3 multi-row
// statements they ran 9 times faster). The transaction:
//
//  1. creates missing conversation rows and locks every conversation of the
//     batch in conv_id order (so two batches cannot deadlock on them);
//  2. reads the batch's (conv, sender, client_msg_id) keys that are already
//     stored: duplicates get their original seq before last_seq moves, so
//     seqs stay gap-free;
//  3. assigns seqs in memory, then writes all messages, all last_seqs and
//     all user_conversations rows in one multi-row statement each;
//  4. commits.
//
// Deadlocks and lock wait timeouts are retried up to deadlockRetryMax times.
//
// Sharding: with several DSNs, messages and conversations live on shard
// route.Home(conv_id, n), user_conversations and contacts on
// route.Home(user_id, n). An Append whose conversations span shards commits
// one transaction per shard (atomic per shard, not across them; a failure
// after another shard committed is reported as store.ErrUnknownOutcome, and
// the caller's resend is settled by dedup). The user_conversations rows of
// users on another shard than the conversation are written in a second
// step after the message commit: read marks and unread counts are then
// eventually consistent across shards, while message order, gap-freedom and
// idempotency are not affected (they live with the conversation). If that
// step fails, Append reports store.ErrUnknownOutcome; the resend finds its
// messages as duplicates and writes the missing rows again (the upsert is
// idempotent: read_seq and last_active_ms only grow).
package mysqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/zzim/zzim/system/bugs"
	"github.com/zzim/zzim/system/route"
	"github.com/zzim/zzim/system/store"
)

var _ store.Store = (*Store)(nil)

// Defaults and bounds.
const (
	// deadlockRetryMax is how many times a transaction aborted by a deadlock
	// or a lock wait timeout is tried again before store.ErrDeadlock.
	deadlockRetryMax = 3
	// maxOpenConnsDefault is each shard's pool size when Config leaves it 0.
	maxOpenConnsDefault = 64
	// shardsMax bounds the DSNs of one store.
	shardsMax = 1024
	// idSizeMax is the VARBINARY width of every id column.
	idSizeMax = 255
	// openTimeout bounds Open's ping and migrations when ctx has no deadline.
	openTimeout = time.Minute
)

// Config configures a Store.
type Config struct {
	// DSNs are go-sql-driver/mysql DSNs, one per shard, in shard order.
	// Changing their number moves rows between shards: that needs a
	// migration of the data, which this package does not do.
	DSNs []string
	// MaxOpenConns bounds each shard's connection pool (0: 64).
	MaxOpenConns int
	// ConnMaxLifetime recycles connections (0: never).
	ConnMaxLifetime time.Duration
	// Bugs enables bug switches (for checker tests only); mysqlstore
	// honours bugs.NoDedup: resends are stored again. The database's unique
	// index is the other half of that guard, so Open drops it: never point a
	// bug run at a database you keep.
	Bugs bugs.Set
}

// Store is a store.Store on one or more MySQL-compatible databases. It is
// safe for concurrent use; several Store values (several das processes)
// may share the databases.
type Store struct {
	shards  []*sql.DB
	noDedup bool // bugs.NoDedup
}

// Open connects to every shard, applies the schema migrations and returns
// the store. The connection settings it needs are added to each DSN:
// READ COMMITTED, strict SQL mode, utf8mb4, client-side interpolation of
// placeholders (a server-side prepared statement costs two more round trips
// per statement; the driver escapes values, never our code) and
// found-rows counts for UPDATE.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.DSNs) == 0 || len(cfg.DSNs) > shardsMax {
		return nil, fmt.Errorf("mysqlstore: got %d DSNs, want 1..%d", len(cfg.DSNs), shardsMax)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, openTimeout)
		defer cancel()
	}
	migrations, err := loadMigrations()
	if err != nil {
		return nil, fmt.Errorf("mysqlstore: %w", err)
	}
	s := &Store{noDedup: cfg.Bugs.On(bugs.NoDedup)}
	for i, dsn := range cfg.DSNs {
		db, err := openShard(ctx, dsn, cfg)
		if err == nil {
			s.shards = append(s.shards, db)
			err = migrate(ctx, db, migrations)
		}
		if err == nil && s.noDedup {
			err = dropDedupIndex(ctx, db)
		}
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("mysqlstore: shard %d: %w", i, err)
		}
	}
	return s, nil
}

func openShard(ctx context.Context, dsn string, cfg Config) (*sql.DB, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse dsn: %w", err)
	}
	isolation, err := isolationVariable(ctx, mc)
	if err != nil {
		return nil, err
	}
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params[isolation] = "'READ-COMMITTED'"
	mc.Params["sql_mode"] = "'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'"
	// Values are interpolated (escaped) by the driver, saving the prepare
	// round trip; several statements may share one round trip (an
	// append's transaction is two, not eight). Query texts are this
	// package's constants: no caller's text is ever part of one.
	mc.InterpolateParams = true
	mc.MultiStatements = true
	mc.ClientFoundRows = true
	mc.Collation = "utf8mb4_bin"
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	db := sql.OpenDB(connector)
	size := cfg.MaxOpenConns
	if size <= 0 {
		size = maxOpenConnsDefault
	}
	db.SetMaxOpenConns(size)
	db.SetMaxIdleConns(size)
	db.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("%w: ping: %w", store.ErrUnavailable, err)
	}
	return db, nil
}

// isolationVariable names the session variable of the isolation level:
// MySQL 8 and MariaDB 11.1+ know transaction_isolation, older MariaDB only
// tx_isolation. Setting it per connection saves the round trip a
// per-transaction SET would cost.
func isolationVariable(ctx context.Context, mc *mysql.Config) (string, error) {
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return "", fmt.Errorf("connector: %w", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	for _, name := range []string{"transaction_isolation", "tx_isolation"} {
		var value string
		err := db.QueryRowContext(ctx, "SELECT @@SESSION."+name).Scan(&value)
		if err == nil {
			return name, nil
		}
		var me *mysql.MySQLError
		if !errors.As(err, &me) || me.Number != errUnknownSystemVariable {
			return "", fmt.Errorf("%w: probe isolation variable: %w", store.ErrUnavailable, err)
		}
	}
	return "", fmt.Errorf("%w: server knows neither transaction_isolation nor tx_isolation", store.ErrUnavailable)
}

// Close closes every shard's pool.
func (s *Store) Close() error {
	var errs []error
	for _, db := range s.shards {
		errs = append(errs, db.Close())
	}
	return errors.Join(errs...)
}

// convShard is the shard of a conversation's messages.
func (s *Store) convShard(convID string) int { return route.Home(convID, len(s.shards)) }

// userShard is the shard of a user's rows.
func (s *Store) userShard(userID string) int { return route.Home(userID, len(s.shards)) }

// dropDedupIndex removes the unique (conv, sender, client_msg_id) index for
// bugs.NoDedup. Several das processes open the store at once: the one that
// finds it gone already (MySQL error 1091) has nothing to do.
func dropDedupIndex(ctx context.Context, db *sql.DB) error {
	_, err := db.ExecContext(ctx, "ALTER TABLE messages DROP INDEX messages_dedup")
	var me *mysql.MySQLError
	if err != nil && !(errors.As(err, &me) && me.Number == 1091) {
		return fmt.Errorf("bug no-dedup: drop index: %w", err)
	}
	return nil
}
