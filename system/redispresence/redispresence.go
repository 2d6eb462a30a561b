// Package redispresence keeps presence in Redis (go-redis v9): one key per
// user, "zzim:presence:<user>" → "<entry>|<conn>|<incarnation>|<device>",
// with a TTL refreshed by heartbeats. Entries can be lost (Redis restart,
// eviction) or stale (a connection that died without SessionClosed): zzim
// tolerates both because a push without PUSH_ACK takes the offline path and
// clients sync periodically.
package redispresence

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/zzim/zzim/system/live"
	"github.com/zzim/zzim/system/node"
)

const keyPrefix = "zzim:presence:"

// ScanCountMax bounds one Scan page.
const ScanCountMax = 1000

// Presence implements live.Presence on Redis.
type Presence struct{ rdb *redis.Client }

var _ live.Presence = (*Presence)(nil)

// New connects to addr (host:port).
func New(addr string) *Presence {
	return &Presence{rdb: redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})}
}

// Ping checks the connection.
func (p *Presence) Ping(ctx context.Context) error { return p.rdb.Ping(ctx).Err() }

// Close closes the client.
func (p *Presence) Close() error { return p.rdb.Close() }

// deleteIfOwner removes the key only if it still names this connection:
// a newer login on another connection must survive an older session's close.
var deleteIfOwner = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)

func encode(e node.PresenceEntry) string {
	return e.Entry.String() + "|" + strconv.FormatUint(uint64(e.Conn), 10) + "|" +
		strconv.FormatUint(uint64(e.Incarnation), 10) + "|" + e.Device
}

func decode(user, v string) (node.PresenceEntry, error) {
	parts := strings.SplitN(v, "|", 4)
	if len(parts) != 4 {
		return node.PresenceEntry{}, fmt.Errorf("presence: bad value %q", v)
	}
	a, err := node.ParseAddr(parts[0])
	if err != nil {
		return node.PresenceEntry{}, err
	}
	conn, err1 := strconv.ParseUint(parts[1], 10, 64)
	inc, err2 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil {
		return node.PresenceEntry{}, fmt.Errorf("presence: bad value %q", v)
	}
	return node.PresenceEntry{User: user, Entry: a, Conn: node.ConnID(conn), Incarnation: node.Incarnation(inc), Device: parts[3]}, nil
}

// Do runs one presence operation.
func (p *Presence) Do(ctx context.Context, op node.PresenceOp) (node.PresenceResult, error) {
	var res node.PresenceResult
	switch op.Kind {
	case node.PresenceSet:
		old, err := p.rdb.SetArgs(ctx, keyPrefix+op.Entry.User, encode(op.Entry), redis.SetArgs{TTL: op.TTL, Get: true}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return res, fmt.Errorf("presence set: %w", err)
		}
		if old != "" {
			if prev, err := decode(op.Entry.User, old); err == nil {
				res.Previous = &prev
			}
		}
	case node.PresenceGet:
		if len(op.Users) == 0 {
			return res, nil
		}
		keys := make([]string, len(op.Users))
		for i, u := range op.Users {
			keys[i] = keyPrefix + u
		}
		vals, err := p.rdb.MGet(ctx, keys...).Result()
		if err != nil {
			return res, fmt.Errorf("presence get: %w", err)
		}
		res.Found = make([]node.PresenceEntry, len(op.Users))
		for i, v := range vals {
			if s, ok := v.(string); ok {
				if e, err := decode(op.Users[i], s); err == nil {
					res.Found[i] = e
				}
			}
		}
	case node.PresenceDelete:
		prefix := op.Entry.Entry.String() + "|" + strconv.FormatUint(uint64(op.Entry.Conn), 10) + "|"
		if err := deleteIfOwner.Run(ctx, p.rdb, []string{keyPrefix + op.Entry.User}, prefix).Err(); err != nil && !errors.Is(err, redis.Nil) {
			return res, fmt.Errorf("presence delete: %w", err)
		}
	case node.PresenceScan:
		count := int64(min(max(op.Count, 1), ScanCountMax))
		keys, cursor, err := p.rdb.Scan(ctx, op.Cursor, keyPrefix+"*", count).Result()
		if err != nil {
			return res, fmt.Errorf("presence scan: %w", err)
		}
		res.Cursor = cursor
		if len(keys) > 0 {
			vals, err := p.rdb.MGet(ctx, keys...).Result()
			if err != nil {
				return res, fmt.Errorf("presence scan: %w", err)
			}
			for i, v := range vals {
				if s, ok := v.(string); ok {
					if e, err := decode(strings.TrimPrefix(keys[i], keyPrefix), s); err == nil {
						res.Found = append(res.Found, e)
					}
				}
			}
		}
	default:
		return res, fmt.Errorf("presence: unknown op %d", op.Kind)
	}
	return res, nil
}
