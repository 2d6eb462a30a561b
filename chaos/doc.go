// Package chaos runs zzim's scenarios (scenarios/) on real containers with
// real faults, and judges the recorded histories with the same checkers
// as the simulator (check/).
//
// # Environment
//
// NewEnv starts, with testcontainers-go and only local images
// (docker/build.sh), one private network holding MariaDB, Redis, NATS
// (JetStream, sync_interval always), toxiproxy, and every zzim service of
// the scenario's topology in its own container (`zzim serve ROLE --slot N`
// from zzim/zzim:dev). Every internal link and every dependency connection
// goes through toxiproxy, one proxy per path ("entry-0->logic-1",
// "das-1->mariadb", "logic-2->redis", "extlogic-0->nats"): each service's
// --peer, --nats, --redis and --mysql point at its own paths, so a fault
// can take one path. Clients on the host reach entries and httpentries on
// published ports directly. Published ports are fixed at creation, so a
// restarted container keeps its address. Every container and the network
// carry the label zzim.chaos.run=<id>; Close removes them all, also after
// a failure or Ctrl-C.
//
// # Faults
//
// crash (SIGKILL, start at the end of the window), restart (SIGKILL then
// start), pause (docker pause), partition (symmetric and one-way: a
// toxiproxy timeout toxic with no timeout on the paths, which drops every
// byte; isolate: docker network disconnect, reconnect with its alias),
// delay (latency toxic), clog (latency as long as the window), db-latency
// (latency per answer on das->mariadb), db-timeout (answers dropped on a
// share of das->mariadb connections, flapping: a transaction caught
// mid-way times out at das with an unknown outcome, committed or not as
// far as it had got), db-outage and mq-outage (paths blackholed). Where a
// parameter cannot be honoured (db-timeout's commit_probability, a
// business) the fault is "approximated" and the note says why. Everything
// else (clock skew, presence loss or staleness, queue redelivery and
// duplication, registry delays, deadlocks, drop/duplicate/reorder of
// messages inside TCP, scale-out/in) only the simulator can do: it is
// "skipped", and a run whose faults are all skipped is verdict=skipped
// without starting anything.
//
// # Time
//
// A scenario's times are in the simulator's virtual time. A chaos run
// multiplies them by Options.Scale (ScaleDefault 0.25: a 2-minute
// scenario's traffic runs 30 s), with two floors: traffic lasts at least
// trafficMin, and a fault window at least forMin (registry TTL plus two
// heartbeats), because failure detection does not scale. Rates are not
// scaled. After the traffic every fault is healed; the run waits (at most
// the liveness bound, at least settleMin) for every send to be
// acknowledged, asks every client to sync every conversation, waits until
// each holds every stored message, records the clients' final holdings,
// stops them, and dumps the store (mysqlstore Dump: the ground truth).
//
// # Verdict
//
// The report has the fault timeline, message counts, send-to-ack latency
// percentiles, the exercised counters (from each service's /metrics,
// scraped every second and summed across restarts; see ExercisedCounters)
// and ends with the line of `zzim sim run`:
//
//	verdict=pass|fail|skipped seed=N trace=- events=E sim_seconds=S wall_seconds=W
//
// trace=- (a real run has no trace hash), events = history operations,
// sim_seconds = real seconds under test (traffic and settle), wall_seconds
// = the whole run with container start and teardown. A run fails when the
// checkers find a violation or cannot decide, when a fault's injector
// failed, or when an exercised counter the scenario requires stayed zero.
package chaos
