// Package bugs holds the bug switches: each removes one guard of the system
// in a few lines where the guard lives, so a test can prove the checkers
// catch its absence. All are off by default and never enabled in production
// unless explicitly asked for by name.
package bugs

import (
	"fmt"
	"sort"
	"strings"
)

// Switch is one bug.
type Switch string

const (
	// LogicLocalSeq: logic assigns seq from a counter in its memory instead of the store's transaction.
	LogicLocalSeq Switch = "logic-local-seq"
	// NoDedup: the store appends resends again instead of returning the original seq.
	NoDedup Switch = "no-dedup"
	// UnserialisedAppends: logic starts a sender's next append before the previous one is definite.
	UnserialisedAppends Switch = "unserialised-appends"
	// AckBeforeCommit: das acknowledges an append before the store has committed it.
	AckBeforeCommit Switch = "ack-before-commit"
	// NoGapFill: the client does not fill seq gaps by sync.
	NoGapFill Switch = "no-gap-fill"
	// StaleSync: das serves sync from a snapshot lagging by up to a bound.
	StaleSync Switch = "stale-sync"
	// NoSemiSync: the database primary acknowledges a commit before its
	// replica has it, although replication is configured semi-synchronous
	// (the simulator's replica; the chaos harness turns MariaDB's semi-sync
	// off): a failover then loses acknowledged messages.
	NoSemiSync Switch = "no-semisync"
)

// All lists every switch in a fixed order.
var All = []Switch{LogicLocalSeq, NoDedup, UnserialisedAppends, AckBeforeCommit, NoGapFill, StaleSync, NoSemiSync}

// Set is a set of enabled switches. The zero value has none.
type Set map[Switch]bool

// On reports whether s is enabled. A nil Set has none.
func (set Set) On(s Switch) bool { return set[s] }

// Parse reads a comma-separated list of switch names ("" is none).
func Parse(list string) (Set, error) {
	set := Set{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		known := false
		for _, s := range All {
			if string(s) == name {
				set[s], known = true, true
			}
		}
		if !known {
			return nil, fmt.Errorf("unknown bug switch %q (known: %s)", name, strings.Join(Names(), ", "))
		}
	}
	return set, nil
}

// Names lists the switch names.
func Names() []string {
	out := make([]string, len(All))
	for i, s := range All {
		out[i] = string(s)
	}
	return out
}

// String lists the enabled switches, sorted.
func (set Set) String() string {
	var names []string
	for s, on := range set {
		if on {
			names = append(names, string(s))
		}
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}
