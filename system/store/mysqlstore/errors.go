package mysqlstore

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/go-sql-driver/mysql"

	"github.com/zzim/zzim/system/store"
)

// MySQL error numbers this package reacts to.
const (
	errLockWaitTimeout       = 1205
	errDeadlock              = 1213
	errDataTooLong           = 1406
	errIncorrectString       = 1366
	errOutOfRange            = 1264
	errUnknownSystemVariable = 1193
)

// errRetry marks an aborted transaction that may be tried again as it is.
var errRetry = errors.New("mysqlstore: transaction aborted, retry")

// sent says whether the request may have reached the database when an
// error came: it decides between a definite failure and an unknown outcome.
type sent int

const (
	// notCommitted: nothing of the transaction can have committed (the
	// error came before COMMIT was sent: the server rolls back an open
	// transaction whose connection breaks).
	notCommitted sent = iota
	// maybeCommitted: a COMMIT or an autocommit write was sent and no
	// answer came.
	maybeCommitted
)

// classify turns a driver error into the store's sentinels.
func classify(op string, err error, when sent) error {
	var me *mysql.MySQLError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &me):
		// The server answered: whatever it refused, it did not commit.
		switch me.Number {
		case errDeadlock, errLockWaitTimeout:
			return fmt.Errorf("%s: %w: %w", op, errRetry, err)
		case errDataTooLong, errIncorrectString, errOutOfRange:
			return fmt.Errorf("%s: %w: %w", op, store.ErrInvalid, err)
		}
		return fmt.Errorf("%s: %w: %w", op, store.ErrUnavailable, err)
	case refusedBeforeSending(err):
		return fmt.Errorf("%s: %w: %w", op, store.ErrUnavailable, err)
	case when == maybeCommitted:
		return fmt.Errorf("%s: %w: %w", op, store.ErrUnknownOutcome, err)
	}
	return fmt.Errorf("%s: %w: %w", op, store.ErrUnavailable, err)
}

// refusedBeforeSending: the connection could not be made, so nothing was sent.
func refusedBeforeSending(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// ctxDone refuses a call whose context is already over, before sending anything.
func ctxDone(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w: %w", op, store.ErrUnavailable, err)
	}
	return nil
}
