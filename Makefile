# zzim: one binary, many roles. `make test` is what CI runs (.ci/run).
GO        ?= go
BIN       := bin/zzim
# Packages the simulator runs: they must take time, randomness and
# concurrency only from their node.Env (see internal/detlint).
SANS_IO   := system/node system/route system/store system/store/memstore system/logic system/das \
             system/client system/entry system/httpentry system/extlogic
FUZZTIME  ?= 30s

.PHONY: build test test-short lint proto fuzz bench images staging-test clean

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/zzim

test: lint
	$(GO) test -count=1 -timeout 25m ./...

test-short:
	$(GO) test -short -count=1 ./...

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	$(GO) run ./internal/detlint/cmd $(wildcard $(SANS_IO))

proto:
	cd system/wire && protoc --go_out=. --go_opt=paths=source_relative -I . app.proto internal.proto

fuzz:
	$(GO) test ./system/wire -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./system/route -run '^$$' -fuzz '^FuzzPick$$' -fuzztime $(FUZZTIME)
	$(GO) test ./system/httpentry -run '^$$' -fuzz '^FuzzHandle$$' -fuzztime $(FUZZTIME)
	$(GO) test ./scenarios -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./check -run '^$$' -fuzz '^FuzzReadHistory$$' -fuzztime $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

clean:
	rm -rf bin

# Every image, built on this machine with no registry (docker/build.sh).
images:
	./docker/build.sh

# The staging deployment end to end (docker/compose.yaml): builds the
# images, brings it up, sends messages through it, checks Prometheus sees
# every service, tears it down (also on failure).
staging-test:
	ZZIM_STAGING=1 $(GO) test -count=1 -timeout 15m -v -run '^TestStaging$$' ./docker/stagingtest

# chaos-ci: a bounded slice of the chaos harness on real containers (needs
# Docker and the images of docker/build.sh; about 4 minutes here): one
# scenario that must pass, one bug switch the checkers must catch (exit 1),
# and a dependency fault: the MariaDB primary failed over to its
# semi-synchronous replica must lose nothing acknowledged, and with das
# acknowledging before the replica confirms (no-semisync) it must be caught.
CHAOS_OUT ?= chaos-out
.PHONY: chaos-ci
chaos-ci:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/zzim
	TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=localhost \
		./$(BIN) chaos run logic-failover --out $(CHAOS_OUT)/logic-failover
	TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=localhost \
		./$(BIN) chaos run ambiguous-commit --bug no-dedup --out $(CHAOS_OUT)/no-dedup; \
		rc=$$?; if [ $$rc -ne 1 ]; then echo "chaos-ci: --bug no-dedup: got exit $$rc, want 1 (the checkers must catch it)"; exit 1; fi
	TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=localhost \
		./$(BIN) chaos run db-failover-semisync --out $(CHAOS_OUT)/db-failover-semisync
	TESTCONTAINERS_RYUK_DISABLED=true TESTCONTAINERS_HOST_OVERRIDE=localhost \
		./$(BIN) chaos run db-failover-semisync --bug no-semisync --out $(CHAOS_OUT)/no-semisync; \
		rc=$$?; if [ $$rc -ne 1 ]; then echo "chaos-ci: --bug no-semisync: got exit $$rc, want 1 (the checkers must catch it)"; exit 1; fi

# Simulator sweeps (not part of `make test`). sweep runs every shipped
# scenario over SWEEP_SEEDS; sweep-ci is the bounded slice CI can afford:
# the quick scenarios over SWEEP_CI_SEEDS (about 2 minutes on 2 shared
# cores). SCENARIOS_SLOW cost from half a minute (traffic-spike, login-storm)
# to several minutes (bench-standard, broadcast-100k) per seed.
.PHONY: sweep sweep-ci
SWEEP_SEEDS    ?= 1-50
SWEEP_CI_SEEDS ?= 1-5
SWEEP_JOBS     ?= 2
SCENARIOS_CI   := logic-failover logic-pause stale-membership entry-restart partition-entry-logic \
                  logic-scale-out logic-scale-in clock-skew das-timeouts ambiguous-commit presence-loss \
                  mq-redelivery longpoll-httpentry-restart db-primary-crash db-failover-semisync \
                  db-failover-async nats-node-loss nats-leader-loss redis-loss
SCENARIOS_SLOW := traffic-spike login-storm bench-standard broadcast-100k
SCENARIOS_ALL  := $(SCENARIOS_CI) $(SCENARIOS_SLOW)

sweep: build
	@rc=0; for s in $(SCENARIOS_ALL); do echo "== $$s"; $(BIN) sim sweep $$s --seeds $(SWEEP_SEEDS) --jobs $(SWEEP_JOBS) || rc=1; done; exit $$rc

sweep-ci: build
	@for s in $(SCENARIOS_CI); do echo "== $$s"; $(BIN) sim sweep $$s --seeds $(SWEEP_CI_SEEDS) --jobs $(SWEEP_JOBS) || exit 1; done
	@echo "== bench-standard --swarm"; $(BIN) sim sweep bench-standard --swarm --seeds $(SWARM_CI_SEEDS) --jobs $(SWEEP_JOBS)

# The full swarm sweep: about an hour and a half on 2 cores (about 10 CPU s
# a seed, run and checkers: 20 seeds took 110 s with --jobs 2 on the 2-core
# build machine). Spread it over
# machines with SWARM_SHARD=K/N on each (K from 0 to N-1): every shard writes
# its results and JUnit report under SWEEP_OUT; copy the shards' files into
# one SWEEP_OUT and `make swarm-merge` prints the whole sweep's summary
# (failing, missing and overlapping seeds) and writes swarm.xml (docs/sweeps.md).
SWARM_SEEDS    ?= 1-1000
# CI's slice is what about 5 minutes buys: 20 swarm seeds took 110 s and 16
# took 81 s with --jobs 2 on the 2-core build machine, so 48 take about 4.5
# minutes (more while other work shares the machine).
SWARM_CI_SEEDS ?= 1-48
SWARM_SHARD    ?= 0/1
SWEEP_OUT      ?= sweep-out
SWARM_FILE      = $(SWEEP_OUT)/swarm-shard-$(subst /,-of-,$(SWARM_SHARD))
.PHONY: swarm swarm-merge
swarm: build
	@mkdir -p $(SWEEP_OUT)
	$(BIN) sim sweep bench-standard --swarm --seeds $(SWARM_SEEDS) --jobs $(SWEEP_JOBS) --shard $(SWARM_SHARD) \
		--results $(SWARM_FILE).jsonl --junit $(SWARM_FILE).xml

swarm-merge: build
	$(BIN) sim merge --junit $(SWEEP_OUT)/swarm.xml $(SWEEP_OUT)/swarm-shard-*.jsonl
