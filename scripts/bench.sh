#!/usr/bin/env bash
# `make bench`: RideLock's figures next to this machine's own limits, measured in the same run.
# Needs the `make run` server (URL, default http://127.0.0.1:3000) and the dev services.
# Prints a summary; BENCHMARKS.md records the figures of a run with the method.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# This script runs the development profile; the binary applies production rules otherwise.
export RIDELOCK_ENV=local
URL=${URL:-http://127.0.0.1:3000}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
OUT=var/bench
mkdir -p "$OUT"

log() { echo "bench: $*" >&2; }
eval "$(bash scripts/services.sh up dev)"

# CPU time (ms, user + system) a process has used so far, from /proc. tree_ms adds its children:
# the live ones, and those it has reaped (cutime + cstime), so PostgreSQL backends that came and
# went during a run (pgbench's) count too. The dev PostgreSQL's postmaster and Redis come from
# `services.sh status`.
CLK_TCK=$(getconf CLK_TCK)
proc_ms() { awk -v t="$CLK_TCK" '{print int(($14 + $15) * 1000 / t)}' "/proc/$1/stat" 2>/dev/null || echo 0; }
reaped_ms() { awk -v t="$CLK_TCK" '{print int(($16 + $17) * 1000 / t)}' "/proc/$1/stat" 2>/dev/null || echo 0; }
tree_ms() {
  local total child
  total=$(($(proc_ms "$1") + $(reaped_ms "$1")))
  for child in $(pgrep -P "$1"); do total=$((total + $(proc_ms "$child"))); done
  echo "$total"
}
service_pid() { bash scripts/services.sh status dev 2>/dev/null | sed -n "s/^$1: running, pid \([0-9]*\).*/\1/p"; }
PG_PID=$(service_pid postgres)
REDIS_PID=$(service_pid redis)
curl -fsS "$URL/api/health" >/dev/null || { log "no server at $URL: start 'make run' first"; exit 1; }
REDIS_PORT=${REDIS_URL##*:}; REDIS_PORT=${REDIS_PORT%%/*}
# The services' passwords (scripts/services.sh) go to the tools through the environment, never
# on a command line; the URLs below carry none.
export PGPASSWORD REDISCLI_AUTH
PGPASSWORD=$(cat var/dev/pg.secret)
REDISCLI_AUTH=$(cat var/dev/redis.secret)
PG_URL=postgres://postgres@${DATABASE_URL#*@}
PG_ADMIN=${PG_URL%/*}/postgres

log "machine"
{
  echo "cores: $(nproc); memory: $(free -h | awk '/Mem:/ {print $2}'); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "kernel: $(uname -r); $(rustc --version); $(redis-server --version | cut -d' ' -f1-3); $(psql --version)"
} | tee "$OUT/machine.txt"

log "Redis: SET NX PX round trip, one client (redis-benchmark)"
# redis-benchmark takes a password only on its command line, where every local user could read
# it; so the machine's limit is measured on a throwaway Redis of the same build, empty, without
# a password, on a free loopback port, stopped right after.
LIMIT_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$LIMIT_PORT" --save '' --appendonly no >"$OUT/redis-limit.log" 2>&1 &
LIMIT_PID=$!
trap 'kill "$LIMIT_PID" 2>/dev/null || true' EXIT
for _ in $(seq 50); do env -u REDISCLI_AUTH redis-cli -p "$LIMIT_PORT" PING >/dev/null 2>&1 && break; sleep 0.1; done
redis-benchmark -h 127.0.0.1 -p "$LIMIT_PORT" -c 1 -n 50000 -r 100000000 --csv \
  SET 'bench:nx:__rand_int__' v NX PX 10000 | tee "$OUT/redis.csv"
kill "$LIMIT_PID"; wait "$LIMIT_PID" 2>/dev/null || true; trap - EXIT

log "PostgreSQL: single-row UPDATE transactions (pgbench, 1 and 16 clients)"
psql -q "$PG_ADMIN" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS ridelock_bench" \
  -c "CREATE DATABASE ridelock_bench"
BENCH_DB=${PG_URL%/*}/ridelock_bench
psql -q "$BENCH_DB" -c "CREATE TABLE rows (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)" \
  -c "INSERT INTO rows (id) SELECT generate_series(1, 1000)"
printf '\\set id random(1, 1000)\nUPDATE rows SET n = n + 1 WHERE id = :id;\n' > "$OUT/update.sql"
for clients in 1 16; do
  pg_before=$(tree_ms "$PG_PID")
  TIMEFORMAT='%U %S'
  { time pgbench -n -f "$OUT/update.sql" -c "$clients" -j "$((clients > 1 ? 2 : 1))" -T "$SECONDS_PER_RUN" \
    "$BENCH_DB" >"$OUT/pgbench-$clients.out"; } 2>"$OUT/pgbench-$clients.time"
  pg_ms=$(($(tree_ms "$PG_PID") - pg_before))
  grep -E '^(tps|latency average)' "$OUT/pgbench-$clients.out" | sed "s/^/clients=$clients /" | tee -a "$OUT/pgbench.txt"
  # CPU per transaction: PostgreSQL's processes plus pgbench's own (its client side).
  python3 - "$OUT/pgbench-$clients.out" "$OUT/pgbench-$clients.time" "$pg_ms" "$clients" <<'PY' | tee -a "$OUT/pgbench.txt"
import re, sys
out = open(sys.argv[1]).read()
n = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
client_ms = sum(float(x) for x in open(sys.argv[2]).read().split()) * 1000
pg_ms = float(sys.argv[3])
print(f"clients={sys.argv[4]} cpu_ms_per_transaction postgres={pg_ms / n:.4f} "
      f"pgbench={client_ms / n:.4f} total={(pg_ms + client_ms) / n:.4f}")
PY
done
psql -q "$PG_ADMIN" -c "DROP DATABASE ridelock_bench"

log "HTTP ceiling: wrk against a static actix-web response"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --example static_http 2>/dev/null
PORT=3900 ./target/release/examples/static_http & STATIC_PID=$!
trap 'kill "$STATIC_PID" 2>/dev/null || true' EXIT
sleep 0.5
wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency http://127.0.0.1:3900/ | tee "$OUT/wrk.txt"
kill "$STATIC_PID"; trap - EXIT

log "RideLock: lifecycle scenario, 64 riders"
cargo build --release 2>/dev/null
./target/release/ridelock loadtest --url "$URL" --scenario lifecycle --riders 64 \
  --duration-s "$SECONDS_PER_RUN" --json > "$OUT/lifecycle.json"
log "RideLock: lifecycle scenario, 16 riders (the lighter load's latency target)"
./target/release/ridelock loadtest --url "$URL" --scenario lifecycle --riders 16 \
  --duration-s "$SECONDS_PER_RUN" --json > "$OUT/lifecycle-16.json"
log "RideLock: 50-way contended assign, five runs"
for run in 1 2 3 4 5; do
  ./target/release/ridelock loadtest --url "$URL" --scenario same-booking --concurrency 50 --json \
    > "$OUT/same-booking-$run.json"
done
# summarize NAME...: lifecycles/s and per-endpoint latencies of $OUT/NAME.json.
summarize() {
  python3 - "$OUT" "$@" <<'PY'
import json, sys
out = sys.argv[1]
for name in sys.argv[2:]:
    r = json.load(open(f"{out}/{name}.json"))
    print(f"{name}: {r['lifecycles_per_s']:.1f} lifecycles/s, violations: {len(r['violations'])}")
    for e in r["endpoints"]:
        if "bookings" in e["endpoint"]:
            print(f"  {e['endpoint']:<34} n={e['count']:<6} ok={e['success_rate']*100:5.1f}% "
                  f"p50={e['p50_ms']:.2f} p99={e['p99_ms']:.2f} max={e['max_ms']:.2f} ms {e['statuses']}")
PY
}
summarize lifecycle lifecycle-16 same-booking-1 same-booking-2 same-booking-3 same-booking-4 \
  same-booking-5

log "RideLock: 10,000 open client connections (wrk on a one-query read)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
wrk -t2 -c10000 -d"${SECONDS_PER_RUN}s" --timeout 10s --latency "$URL/api/drivers/1" | tee "$OUT/connections.txt"

log "RideLock: lease acquisition latency as the server saw it (last 4096 acquisitions)"
curl -fsS "$URL/api/locks/stats" | python3 -c 'import json, sys; d = json.load(sys.stdin)["data"]; print("acquisition_ms", d["acquisition_ms"], "timeout_rate", d["timeout_rate"])' \
  | tee "$OUT/acquisition.txt"

# A node of our own for the next steps, on the dev services: serve_node PORT NODE_ID [ENV=VALUE...]
serve_node() {
  local port=$1 node=$2; shift 2
  env RIDELOCK_ENV=local RIDELOCK_SERVER__PORT="$port" RIDELOCK_NODE__ID="$node" \
    RUST_LOG=warn,ridelock::startup=info "$@" \
    ./target/release/ridelock serve >> "$OUT/$node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && return; sleep 0.1; done
  log "node $node did not start; see $OUT/$node.log"; exit 1
}
stop_node() {
  local started
  started=$(date +%s%N)
  kill -TERM "$NODE_PID"
  wait "$NODE_PID" || true
  echo "sigterm_to_exit_ms $(( ($(date +%s%N) - started) / 1000000 ))"
}
rss_mb() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$NODE_PID/status"; }

log "RideLock: CPU per lifecycle (a node of our own, 64 riders, server + PostgreSQL + Redis)"
serve_node 3920 bench-cpu RIDELOCK_REDIS__KEY_PREFIX=bench-cpu:
./target/release/ridelock loadtest --url http://127.0.0.1:3920 --scenario lifecycle --riders 64 \
  --duration-s 3 --quiet >/dev/null 2>&1 # warm-up: connections, prepared statements, index
before="$(proc_ms "$NODE_PID") $(tree_ms "$PG_PID") $(proc_ms "$REDIS_PID")"
./target/release/ridelock loadtest --url http://127.0.0.1:3920 --scenario lifecycle --riders 64 \
  --duration-s "$SECONDS_PER_RUN" --quiet --json > "$OUT/cpu-lifecycle.json"
after="$(proc_ms "$NODE_PID") $(tree_ms "$PG_PID") $(proc_ms "$REDIS_PID")"
# How many booking changes each group commit carried (warm-up included).
curl -fsS http://127.0.0.1:3920/metrics | grep '^ridelock_write_batch_size' > "$OUT/batch-sizes.txt"
stop_node >/dev/null
python3 - "$OUT/cpu-lifecycle.json" "$before" "$after" "$OUT/pgbench.txt" "$OUT/batch-sizes.txt" <<'PY' | tee "$OUT/cpu.txt"
import json, re, sys
r = json.load(open(sys.argv[1]))
before, after = (list(map(int, a.split())) for a in sys.argv[2:4])
n = r["lifecycles"]
server, pg, redis = ((a - b) / n for a, b in zip(after, before))
total = server + pg + redis
print(f"lifecycles={n} ({r['lifecycles_per_s']:.0f}/s) violations={len(r['violations'])}")
print(f"cpu_ms_per_lifecycle server={server:.3f} postgres={pg:.3f} redis={redis:.3f} total={total:.3f}")
per_tx = [float(m) for m in re.findall(r"clients=16 cpu_ms_per_transaction .* total=([0-9.]+)",
                                       open(sys.argv[4]).read())]
if per_tx:
    print(f"ratio: one lifecycle costs {total / per_tx[-1]:.1f} single-row pgbench transactions "
          f"({per_tx[-1]:.4f} ms each, 16 clients)")
lines = open(sys.argv[5]).read().splitlines()
buckets = [(re.search(r'le="([^"]+)"', l).group(1), int(l.split()[-1])) for l in lines if "_bucket" in l]
total_changes = next((int(l.split()[-1]) for l in lines if "_sum" in l), 0)
batches = next((int(l.split()[-1]) for l in lines if "_count" in l), 0)
if batches:
    previous, shares = 0, []
    for le, cumulative in buckets:
        shares.append(f"<={le}: {cumulative - previous}")
        previous = cumulative
    print(f"write batches={batches} changes={total_changes} mean={total_changes / batches:.1f} "
          f"per batch; batches by size: {', '.join(shares)}")
PY

ACTORS=${BENCH_ACTORS:-100000}
log "RideLock: $ACTORS live booking actors in one node (resident memory)"
# A long idle stop keeps every actor alive until the memory is read.
serve_node 3901 bench-actors RIDELOCK_BOOKING__IDLE_STOP_MS=900000
echo "rss_mb_idle $(rss_mb)" | tee "$OUT/actors.txt"
./target/release/ridelock loadtest --url http://127.0.0.1:3901 --scenario actors --bookings "$ACTORS" \
  --quiet --json > "$OUT/actors.json"
{
  echo "rss_mb_with_actors $(rss_mb)"
  echo "leases_held $(redis-cli -p "$REDIS_PORT" --scan --pattern 'lock:booking:*' | wc -l)"
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print("violations", len(r["violations"]), "elapsed_s", round(r["elapsed_s"], 1))' "$OUT/actors.json"
} | tee -a "$OUT/actors.txt"
# SIGTERM with every lease held: how long the drain takes, and whether any lease is left behind.
stop_node > "$OUT/actors-stop.txt" # not in the pipe below: `wait` needs the node as our child
{
  cat "$OUT/actors-stop.txt"
  grep -o 'leases_released=[0-9]* took_ms=[0-9]*' "$OUT/bench-actors.log" | tail -1
  echo "leases_left $(redis-cli -p "$REDIS_PORT" --scan --pattern 'lock:booking:*' | wc -l)"
} | tee -a "$OUT/actors.txt"

log "RideLock: three nodes on this machine (3911-3913), requests round-robin over them"
# Two of every three booking actions land on a node without the lease and are forwarded.
CLUSTER_PIDS=()
for i in 1 2 3; do
  serve_node "391$i" "bench-n$i" RIDELOCK_REDIS__KEY_PREFIX=bench-cluster:
  CLUSTER_PIDS+=("$NODE_PID")
done
CLUSTER_URLS=(--url http://127.0.0.1:3911 --url http://127.0.0.1:3912 --url http://127.0.0.1:3913)
./target/release/ridelock loadtest "${CLUSTER_URLS[@]}" --scenario lifecycle --riders 64 \
  --duration-s "$SECONDS_PER_RUN" --quiet --json > "$OUT/cluster-lifecycle.json"
./target/release/ridelock loadtest "${CLUSTER_URLS[@]}" --scenario same-booking --concurrency 50 \
  --quiet --json > "$OUT/cluster-same-booking.json"
{
  summarize cluster-lifecycle cluster-same-booking
  for i in 1 2 3; do
    echo "bench-n$i acquisition_ms $(curl -fsS "http://127.0.0.1:391$i/api/locks/stats" \
      | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["acquisition_ms"])')" \
      "$(curl -fsS "http://127.0.0.1:391$i/metrics" | grep -E '^ridelock_forwards_(sent|received)_total' | tr '\n' ' ')"
  done
} | tee "$OUT/cluster.txt"

STREAMS=${BENCH_STREAMS:-1000}
log "RideLock: event streams, $STREAMS open on the three nodes under lifecycle traffic"
# The same three nodes, alternating runs without and with the streams (the riders' own 64, the
# rest idle users'): what the streams cost the lifecycles, and each event's delay after its
# write began, on the node that wrote it and on the others.
for run in 1 2 3; do
  for streams in 0 "$STREAMS"; do
    ./target/release/ridelock loadtest "${CLUSTER_URLS[@]}" --scenario lifecycle --riders 64 \
      --duration-s "$SECONDS_PER_RUN" --streams "$streams" --quiet --json \
      > "$OUT/streams-$streams-$run.json"
    python3 - "$OUT/streams-$streams-$run.json" "$streams" "$run" <<'PY' | tee -a "$OUT/streams.txt"
import json, sys
r = json.load(open(sys.argv[1]))
line = f"streams {sys.argv[2]} run {sys.argv[3]}: {r['lifecycles_per_s']:.1f} lifecycles/s, violations {len(r['violations'])}"
s = r.get("streams")
if s:
    same, other = s["same_node"], s["other_node"]
    line += (f"; {s['open']} open, {s['refused']} refused, {s['events']} events; delay same node p50 "
             f"{same['p50_ms']:.1f} p99 {same['p99_ms']:.1f} max {same['max_ms']:.1f} ms ({same['count']}), "
             f"other node p50 {other['p50_ms']:.1f} p99 {other['p99_ms']:.1f} max {other['max_ms']:.1f} ms "
             f"({other['count']})")
print(line)
PY
  done
done
for pid in "${CLUSTER_PIDS[@]}"; do kill -TERM "$pid"; done
for pid in "${CLUSTER_PIDS[@]}"; do wait "$pid" || true; done

IDLE_STREAMS=${BENCH_IDLE_STREAMS:-10000}
log "RideLock: $IDLE_STREAMS idle event streams on one node (resident memory)"
serve_node 3903 bench-streams RIDELOCK_REDIS__KEY_PREFIX=bench-streams:
echo "rss_mb_idle $(rss_mb)" | tee "$OUT/idle-streams.txt"
# One rider's lifecycles for long enough to read the memory with every stream open.
./target/release/ridelock loadtest --url http://127.0.0.1:3903 --scenario lifecycle --riders 1 \
  --duration-s 20 --rate 1 --streams "$IDLE_STREAMS" --quiet --json > "$OUT/idle-streams.json" &
LOAD_PID=$!
for _ in $(seq 120); do
  open=$(ss -Htn state established "( sport = :3903 )" | wc -l)
  [[ $open -ge $IDLE_STREAMS ]] && break
  sleep 0.5
done
{
  echo "connections_open $open"
  echo "rss_mb_with_streams $(rss_mb)"
} | tee -a "$OUT/idle-streams.txt"
wait "$LOAD_PID" || true
python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["streams"]; print("streams_open", s["open"], "refused", s["refused"])' \
  "$OUT/idle-streams.json" | tee -a "$OUT/idle-streams.txt"
stop_node >/dev/null

ROWS=${BENCH_ROWS:-10000000}
log "RideLock: lifecycle throughput with 10,000 and then $ROWS rows in bookings"
psql -q "$PG_ADMIN" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS ridelock_rows" \
  -c "CREATE DATABASE ridelock_rows"
ROWS_DB=${PG_URL%/*}/ridelock_rows
DATABASE_URL=${DATABASE_URL%/*}/ridelock_rows ./target/release/ridelock migrate
# History: cancelled bookings of 10,000 riders, spread over the globe.
grow_to() {
  psql -q "$ROWS_DB" -c "
    INSERT INTO bookings (rider_id, pickup_lat, pickup_lng, dropoff_lat, dropoff_lng, estimated_fare,
                          status, cancelled_at, created_at, updated_at)
    SELECT (SELECT min(id) FROM riders) + g % 10000, random() * 170 - 85, random() * 350 - 175,
           random() * 170 - 85, random() * 350 - 175, 5 + (g % 50), 'cancelled', now(), now(), now()
    FROM generate_series((SELECT count(*) FROM bookings) + 1, $1) g" -c "VACUUM ANALYZE bookings"
}
psql -q "$ROWS_DB" -c "INSERT INTO riders (name, phone) SELECT 'History ' || g, '+1 555 ' || g FROM generate_series(1, 10000) g"
grow_to 10000
for rows in 10000 "$ROWS"; do
  [[ $rows == 10000 ]] || { log "growing bookings to $rows rows"; time grow_to "$rows"; }
  # Its own key prefix: booking ids of this database overlap those of the dev database.
  serve_node 3902 bench-rows "DATABASE_URL=${DATABASE_URL%/*}/ridelock_rows" RIDELOCK_REDIS__KEY_PREFIX=bench-rows:
  for run in 1 2; do
    ./target/release/ridelock loadtest --url http://127.0.0.1:3902 --scenario lifecycle --riders 64 \
      --duration-s "$SECONDS_PER_RUN" --quiet --json > "$OUT/rows-$rows-$run.json"
    python3 - "$OUT/rows-$rows-$run.json" "$rows" "$run" <<'PY' | tee -a "$OUT/rows.txt"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"rows {sys.argv[2]} run {sys.argv[3]}: {r['lifecycles_per_s']:.1f} lifecycles/s, "
      f"violations {len(r['violations'])}")
PY
  done
  stop_node
done
psql -q "$PG_ADMIN" -c "DROP DATABASE ridelock_rows"

log "lease round trips (criterion, real Redis)"
REDIS_URL=$REDIS_URL cargo bench --bench leases -- --warm-up-time 1 --measurement-time "$SECONDS_PER_RUN" 2>/dev/null \
  | grep -E '^lease|time:' | tee "$OUT/criterion.txt"
log "done; raw outputs in $OUT/"
