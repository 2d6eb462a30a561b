#!/usr/bin/env bash
# compare-counters.sh BEFORE AFTER: runs the same scenarios and seeds with two
# zzim binaries and checks that each run gives the same verdict and the same
# counters (every line of the run's `trace` file but its first, which holds
# the trace hash and the number of handled events: both may change between
# versions when the simulator's bookkeeping changes, the system's behaviour
# must not). It prints one row per run and exits 1 if any row differs.
#
#   SCENARIOS  scenarios to run (default: five that cover failover, store
#              timeouts, queue redelivery, partitions and the swarm); NAME:swarm
#              runs NAME with --swarm, NAME:bug=SWITCH with that bug switch on
#   SEEDS      first-last (default 1-20)
#   JOBS       runs at once (default 2)
#
# Example: sim/compare-counters.sh /tmp/zzim-before ./zzim
set -euo pipefail

before=${1:?usage: compare-counters.sh BEFORE AFTER}
after=${2:?usage: compare-counters.sh BEFORE AFTER}
scenarios=${SCENARIOS:-"logic-failover das-timeouts mq-redelivery partition-entry-logic bench-standard:swarm"}
seeds=${SEEDS:-1-20}
jobs=${JOBS:-2}
first=${seeds%-*}
last=${seeds#*-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# one runs one binary on one scenario and seed and leaves verdict, events
# and counters in $work/NAME.
one() {
	local bin=$1 tag=$2 sc=$3 seed=$4
	local name=${sc%%:*} flags=()
	case $sc in
	*:swarm) flags=(--swarm) ;;
	*:bug=*) flags=(--bug "${sc#*:bug=}") ;;
	esac
	local dir=$work/$tag-${sc//[:=]/_}-$seed
	mkdir -p "$dir"
	local rc=0
	"$bin" sim run "$name" "${flags[@]}" --seed "$seed" --out "$dir/out" >"$dir/stdout" 2>"$dir/stderr" || rc=$?
	local verdict
	verdict=$(grep -o 'verdict=[a-z]*' "$dir/stdout" | tail -1 | cut -d= -f2)
	echo "${verdict:-none}/exit$rc" >"$dir/verdict"
	head -2 "$dir/out/trace" 2>/dev/null | grep -o 'events=[0-9]*' | cut -d= -f2 >"$dir/events" || true
	tail -n +3 "$dir/out/trace" >"$dir/counters" 2>/dev/null || true
	rm -rf "$dir/out"
}
export -f one
export work

for sc in $scenarios; do
	for ((seed = first; seed <= last; seed++)); do
		echo "$before before $sc $seed"
		echo "$after after $sc $seed"
	done
done | xargs -P "$jobs" -L 1 bash -c 'one "$@"' _

status=0
printf '%-36s %5s %-16s %-16s %-9s %10s %10s\n' scenario seed verdict-before verdict-after counters events-before events-after
for sc in $scenarios; do
	for ((seed = first; seed <= last; seed++)); do
		b=$work/before-${sc//[:=]/_}-$seed
		a=$work/after-${sc//[:=]/_}-$seed
		vb=$(cat "$b/verdict") va=$(cat "$a/verdict")
		n=$(wc -l <"$b/counters")
		same=same
		if [[ $n -eq 0 ]] || ! cmp -s "$b/counters" "$a/counters"; then
			same=DIFFER
		fi
		if [[ $vb != "$va" || $same != same ]]; then
			status=1
		fi
		printf '%-36s %5d %-16s %-16s %-9s %10s %10s\n' "$sc" "$seed" "$vb" "$va" "$same($n)" \
			"$(cat "$b/events")" "$(cat "$a/events")"
		if [[ $same != same && $n -gt 0 ]]; then
			diff "$b/counters" "$a/counters" | sed 's/^/    /' | head -20
		fi
	done
done
exit $status
