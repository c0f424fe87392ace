#!/usr/bin/env bash
# `make bench`: RideLock's figures next to this machine's own limits, measured in the same run.
# Needs the `make run` server (URL, default http://127.0.0.1:3000) and the dev services.
# Prints a summary; BENCHMARKS.md records the figures of a run with the method.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
URL=${URL:-http://127.0.0.1:3000}
SECONDS_PER_RUN=${BENCH_SECONDS:-10}
OUT=var/bench
mkdir -p "$OUT"

log() { echo "bench: $*" >&2; }
eval "$(bash scripts/services.sh up dev)"
curl -fsS "$URL/api/health" >/dev/null || { log "no server at $URL: start 'make run' first"; exit 1; }
REDIS_PORT=${REDIS_URL##*:}; REDIS_PORT=${REDIS_PORT%%/*}
PG_ADMIN=${DATABASE_URL%/*}/postgres

log "machine"
{
  echo "cores: $(nproc); memory: $(free -h | awk '/Mem:/ {print $2}'); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "kernel: $(uname -r); $(rustc --version); $(redis-server --version | cut -d' ' -f1-3); $(psql --version)"
} | tee "$OUT/machine.txt"

log "Redis: SET NX PX round trip, one client (redis-benchmark)"
redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c 1 -n 50000 -r 100000000 --csv \
  SET 'bench:nx:__rand_int__' v NX PX 10000 | tee "$OUT/redis.csv"

log "PostgreSQL: single-row UPDATE transactions (pgbench, 1 and 16 clients)"
psql -q "$PG_ADMIN" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS ridelock_bench" \
  -c "CREATE DATABASE ridelock_bench"
BENCH_DB=${DATABASE_URL%/*}/ridelock_bench
psql -q "$BENCH_DB" -c "CREATE TABLE rows (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)" \
  -c "INSERT INTO rows (id) SELECT generate_series(1, 1000)"
printf '\\set id random(1, 1000)\nUPDATE rows SET n = n + 1 WHERE id = :id;\n' > "$OUT/update.sql"
for clients in 1 16; do
  pgbench -n -f "$OUT/update.sql" -c "$clients" -j "$((clients > 1 ? 2 : 1))" -T "$SECONDS_PER_RUN" "$BENCH_DB" \
    | grep -E '^(tps|latency average)' | sed "s/^/clients=$clients /" | tee -a "$OUT/pgbench.txt"
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
log "RideLock: 50-way contended assign"
./target/release/ridelock loadtest --url "$URL" --scenario same-booking --concurrency 50 --json > "$OUT/same-booking.json"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for name in ("lifecycle", "same-booking"):
    r = json.load(open(f"{out}/{name}.json"))
    print(f"{name}: {r['lifecycles_per_s']:.1f} lifecycles/s, violations: {len(r['violations'])}")
    for e in r["endpoints"]:
        if "bookings" in e["endpoint"]:
            print(f"  {e['endpoint']:<34} n={e['count']:<6} ok={e['success_rate']*100:5.1f}% "
                  f"p50={e['p50_ms']:.2f} p99={e['p99_ms']:.2f} max={e['max_ms']:.2f} ms {e['statuses']}")
PY

log "RideLock: 10,000 open client connections (wrk on a one-query read)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
wrk -t2 -c10000 -d"${SECONDS_PER_RUN}s" --timeout 10s --latency "$URL/api/drivers/1" | tee "$OUT/connections.txt"

log "RideLock: lease acquisition latency as the server saw it (last 4096 acquisitions)"
curl -fsS "$URL/api/locks/stats" | python3 -c 'import json, sys; d = json.load(sys.stdin)["data"]; print("acquisition_ms", d["acquisition_ms"], "timeout_rate", d["timeout_rate"])' \
  | tee "$OUT/acquisition.txt"

log "lease round trips (criterion, real Redis)"
REDIS_URL=$REDIS_URL cargo bench --bench leases -- --warm-up-time 1 --measurement-time "$SECONDS_PER_RUN" 2>/dev/null \
  | grep -E '^lease|time:' | tee "$OUT/criterion.txt"
log "done; raw outputs in $OUT/"
