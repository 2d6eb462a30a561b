package main

import (
	"context"
	"database/sql"
	"fmt"

	_ "github.com/go-sql-driver/mysql"
)

// msgKey names one message of a run: its step and its id in the step.
type msgKey struct{ step, id int }

// storeMessages reads every message in zzim's store (the messages table
// of MariaDB, one shard) and counts the run's bodies by (step, id), with
// the conversation each was stored in. It is the after-run check of what
// "acknowledged" promised: a send zzim acknowledged is durable, so its
// message is in this table whether or not anything delivered it. It reads
// the table itself rather than asking zzim, so a fault in zzim's sync
// path cannot hide a stored message, nor invent one.
func storeMessages(ctx context.Context, dsn string) (map[msgKey][]string, int64, error) {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, 0, err
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, "SELECT conv_id, body FROM messages")
	if err != nil {
		return nil, 0, fmt.Errorf("read messages: %w", err)
	}
	defer rows.Close()
	out := map[msgKey][]string{}
	var n int64
	for rows.Next() {
		var conv, body string
		if err := rows.Scan(&conv, &body); err != nil {
			return nil, 0, fmt.Errorf("read messages: %w", err)
		}
		n++
		if step, id, _, ok := parseBody(body); ok {
			k := msgKey{step, id}
			out[k] = append(out[k], conv)
		}
	}
	return out, n, rows.Err()
}
