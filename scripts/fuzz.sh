#!/usr/bin/env bash
# Schemathesis against a real ridelock server, driven by the server's own OpenAPI document, then
# abuse probes it does not make (scripts/fuzz_abuse.py: made-up methods, an id sweep, token
# lifetime edges).
#
#   bash scripts/fuzz.sh [BINARY]        BINARY defaults to target/debug/ridelock
#
# `make test` calls this after `scripts/services.sh up test` and `. var/test/env`, so
# DATABASE_URL and REDIS_URL name the test PostgreSQL and Redis. The unit and API tests check
# what we thought of; this checks what we did not: every operation in /api/openapi.json gets
# generated valid and invalid requests, and the answers must be documented (status code,
# content type, body schema), never a 5xx, never slower than the request timeout.
#
# Three runs, each on its own fresh, seeded database, Redis key prefix and server process:
#   jwt-ops    test profile, an operator's token     (`ridelock token ops fuzz`)
#   jwt-rider  test profile, rider 1's token         (`ridelock token rider 1`); the rider is
#              refused what only operators may do, so the 403s must be documented too
#   off        local profile with auth.mode = off, no token; the declared authentication is not
#              checked there, because not enforcing it is what that mode is for
#
# Every run goes to the end and is cleaned up (server stopped by PID, database dropped, Redis
# keys deleted), even when one fails; the script exits non-zero if any run failed.
#
# Environment:
#   FUZZ_EXAMPLES  test cases per operation and phase (default 30)
#   FUZZ_SEED      one seed for all three runs instead of the fixed per-run ones
#   FUZZ_TIMEOUT_S limit on one `st run`, seconds (default 600)
#   FUZZ_SCHEMA    a schema file or URL to test instead of the server's /api/openapi.json
#   FUZZ_ST_ARGS   extra `st run` arguments, split on spaces, e.g. "--phases fuzzing"
#
# Output in var/fuzz/: <run>.log (the server), <run>/junit.xml and <run>/report.json
# (schemathesis), and <run>/.schemathesis/ (its crash files: `cd var/fuzz/<run> && st replay ID`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Paths given by the caller are relative to where they ran this, so resolve them before cd.
BINARY=$(realpath -m "${1:-$ROOT/target/debug/ridelock}")
if [[ -f ${FUZZ_SCHEMA:-} ]]; then FUZZ_SCHEMA=$(realpath "$FUZZ_SCHEMA"); fi
cd "$ROOT"

ST_VERSION=4.32.5
VENV=$ROOT/var/st-venv
ST=$VENV/bin/st
OUT=$ROOT/var/fuzz
RUNS=(jwt-ops jwt-rider off)
# Fixed seeds: a CI failure reproduces locally with the same command.
declare -A SEEDS=([jwt-ops]=6101 [jwt-rider]=6102 [off]=6103)
EXAMPLES=${FUZZ_EXAMPLES:-30}
START_TIMEOUT_S=60
STOP_TIMEOUT_S=15
# A hung run is a failure too (timeout exits 124).
RUN_TIMEOUT_S=${FUZZ_TIMEOUT_S:-600}

log() { echo "fuzz: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# --- schemathesis ----------------------------------------------------------

python_for_venv() {
  # Debian's own interpreter has ensurepip via python3-venv; a pyenv one on PATH may not.
  if [[ -x /usr/bin/python3 ]]; then echo /usr/bin/python3; else command -v python3; fi
}

# Installs schemathesis into var/st-venv unless the right version is already there.
ensure_schemathesis() {
  if [[ $("$ST" --version 2>/dev/null) == *" $ST_VERSION" ]]; then
    return 0
  fi
  local python
  python=$(python_for_venv) || die "python3 is not installed"
  log "installing schemathesis $ST_VERSION into ${VENV#"$ROOT"/}"
  rm -rf "$VENV"
  if ! "$python" -m venv "$VENV" >&2; then
    ((EUID == 0)) || die "cannot create a venv: please install python3-venv"
    log "installing python3-venv"
    rm -rf "$VENV"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2
    "$python" -m venv "$VENV" >&2
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION" >&2
  [[ $("$ST" --version) == *" $ST_VERSION" ]] || die "$ST does not report version $ST_VERSION"
}

# --- PostgreSQL and Redis --------------------------------------------------

psql_bin() {
  if [[ -x /usr/lib/postgresql/15/bin/psql ]]; then
    echo /usr/lib/postgresql/15/bin/psql
  else
    command -v psql || die "psql not found (it comes with postgresql-15, see scripts/services.sh)"
  fi
}

# with_database URL NAME: URL with its database replaced by NAME (query string kept).
with_database() {
  local base=${1%%\?*}
  local query=${1#"$base"}
  [[ ${base#*://} == */* ]] || base+=/x
  echo "${base%/*}/$2$query"
}

# url_password URL: the password of a postgres:// or redis:// URL, if any.
url_password() {
  local rest=${1#*://}
  rest=${rest%%/*}
  [[ $rest == *@* ]] || return 0
  rest=${rest%@*}
  [[ $rest == *:* ]] && echo "${rest#*:}"
}

# without_password URL: URL without its password, which goes through the environment instead
# (a command line is readable by every local user).
without_password() {
  local scheme=${1%%://*} rest=${1#*://} auth
  [[ ${rest%%/*} == *@* ]] || { echo "$1"; return; }
  auth=${rest%%@*}
  echo "$scheme://${auth%%:*}@${rest#*@}"
}

# psql URL ARGS...: psql against URL, its password in the environment.
psql_url() {
  local url=$1
  shift
  PGPASSWORD=$(url_password "$url") "$(psql_bin)" "$(without_password "$url")" "$@"
}

# redis-cli against REDIS_URL, its password in the environment.
redis_cli() {
  local hostport=${REDIS_URL#*://}
  hostport=${hostport#*@}
  hostport=${hostport%%/*}
  REDISCLI_AUTH=$(url_password "$REDIS_URL") redis-cli -h "${hostport%:*}" -p "${hostport##*:}" "$@"
}

admin_sql() { psql_url "$(with_database "$DATABASE_URL" postgres)" -v ON_ERROR_STOP=1 -Atqc "$1"; }

# --- one run ---------------------------------------------------------------
# These functions run in a subshell per run and share its globals: RUN, TAG, DB_NAME, DB_URL,
# PREFIX, RUN_ENV (the server's environment), SERVER_PID, PORT, TOKEN.

create_database() {
  admin_sql "CREATE DATABASE $DB_NAME" >/dev/null || die "$RUN: cannot create database $DB_NAME"
  env "${RUN_ENV[@]}" "$BINARY" migrate >>"$OUT/$RUN.log" 2>&1 || die_with_log "$RUN: migrate failed"
  env "${RUN_ENV[@]}" "$BINARY" seed >>"$OUT/$RUN.log" 2>&1 || die_with_log "$RUN: seed failed"
}

die_with_log() {
  log "error: $1; last lines of ${OUT#"$ROOT"/}/$RUN.log:"
  tail -n 30 "$OUT/$RUN.log" >&2 || true
  exit 1
}

# The server binds port 0 and logs the port it got (as tests/support/cluster.rs reads it), so no
# other process can take a port picked for it in between.
start_server() {
  env "${RUN_ENV[@]}" RUST_LOG=info "$BINARY" serve >>"$OUT/$RUN.log" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + START_TIMEOUT_S)) node=fuzz-$RUN
  until [[ -n ${PORT:-} ]] && [[ $(health_status) == 200 ]]; do
    kill -0 "$SERVER_PID" 2>/dev/null || die_with_log "$RUN: the server exited"
    ((SECONDS < deadline)) || die_with_log "$RUN: no healthy server after ${START_TIMEOUT_S}s"
    PORT=$(sed -n "s/.*listening node=$node port=\([0-9]*\).*/\1/p" "$OUT/$RUN.log" | head -n 1)
    sleep 0.2
  done
  log "$RUN: server pid $SERVER_PID on 127.0.0.1:$PORT"
}

health_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/api/health" || true; }

# SIGTERM lets the server drain and give back its leases; SIGKILL only if it does not exit in time.
stop_server() {
  [[ -n ${SERVER_PID:-} ]] || return 0
  local pid=$SERVER_PID status=0 deadline=$((SECONDS + STOP_TIMEOUT_S))
  SERVER_PID=
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$RUN: server pid $pid still running ${STOP_TIMEOUT_S}s after SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.1
  done
  wait "$pid" 2>/dev/null || status=$?
  log "$RUN: server pid $pid stopped, exit status $status"
}

# What the run drove bookings through, from the audit trail (a line like
# `assigned=6 accepted=2 cancelled=3 completed=1`): how deep into the lifecycle the generated
# requests got, which the fuzzer's own figures do not show. Written before the database goes.
record_moves() {
  [[ -n ${DB_NAME:-} && -d $OUT/$RUN ]] || return 0
  psql_url "$DB_URL" -Atqc "SELECT to_status || '=' || count(*) FROM booking_events
    WHERE from_status IS NOT NULL GROUP BY to_status ORDER BY to_status" 2>/dev/null |
    paste -sd ' ' >"$OUT/$RUN/moves"
}

# Runs on the subshell's exit, whatever ended it.
cleanup() {
  set +e
  stop_server
  record_moves
  [[ -z ${DB_NAME:-} ]] || admin_sql "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null ||
    log "$RUN: could not drop database $DB_NAME"
  redis_cli --scan --pattern "$PREFIX*" 2>/dev/null |
    while read -r key; do redis_cli del "$key" >/dev/null 2>&1; done
}

# The test profile's secret signs the token, so the server started with it accepts it.
mint_token() {
  local who
  case $RUN in
    jwt-ops) who=(ops fuzz) ;;
    jwt-rider) who=(rider 1) ;; # created by `ridelock seed`
    *) return 0 ;;
  esac
  TOKEN=$(env "${RUN_ENV[@]}" "$BINARY" token "${who[@]}") || die "$RUN: \`ridelock token ${who[*]}\` failed"
}

# Flags as `st run --help` of 4.32.5 names them:
#   --origin           base URL for the requests; the schema's own `servers` path is appended, so it
#                      also works for a FUZZ_SCHEMA file (which otherwise needs --url)
#   --checks all       every check (the v4 default, spelt out); `off` drops ignored_auth
#   --seed             a fixed seed per run, so CI is reproducible
#   --max-examples     per operation and phase
#   --generation-database none   no Hypothesis example database carried between runs
#   --request-timeout  a request unanswered after 10 s fails the run as a hang (the server's own
#                      deadline is server.request_timeout_ms + 1 s = 6 s)
#   --wait-for-schema  retry a schema fetch that cannot connect (a guard: the server is healthy)
#   --exclude-path-regex '/stream$'  the event streams: an accepted stream never ends, so each
#                      schema-valid case would wait out the request timeout (3 operations × 30
#                      examples × 10 s per phase: past RUN_TIMEOUT_S). Their refusals and frames
#                      are tested in tests/api/streams.rs.
# Phases: the defaults (examples, coverage, fuzzing, stateful). On a 10-operation stand-in for the
# API the stateful phase took 3 s of a 10 s run, far from a reason to leave it out.
run_schemathesis() {
  local schema=${FUZZ_SCHEMA:-http://127.0.0.1:$PORT/api/openapi.json}
  local dir=$OUT/$RUN extra=()
  local args=(
    --config-file "$ROOT/config/schemathesis.toml"
    run "$schema"
    --origin "http://127.0.0.1:$PORT"
    --checks all
    --seed "${FUZZ_SEED:-${SEEDS[$RUN]}}"
    --max-examples "$EXAMPLES"
    --generation-database none
    --request-timeout 10
    --wait-for-schema 30
    --exclude-path-regex '/stream$'
    --report "junit,json"
    --report-junit-path "$dir/junit.xml"
    --report-json-path "$dir/report.json"
  )
  if [[ -n ${TOKEN:-} ]]; then
    args+=(-H "Authorization: Bearer $TOKEN")
  else
    # The document still declares bearer auth, which this mode does not enforce: without these two,
    # ignored_auth (ST401) fails every 2xx, and the requests generated without the declared
    # Authorization header fail negative_data_rejection (ST201) and missing_required_header (ST203).
    args+=(--exclude-checks ignored_auth --generation-with-security-parameters false)
  fi
  read -ra extra <<<"${FUZZ_ST_ARGS:-}"
  mkdir -p "$dir"
  # From its own directory: schemathesis keeps crash files and a replay cache in ./.schemathesis,
  # and a cache left by an earlier run would be replayed first, so each run starts without one.
  (cd "$dir" && timeout --foreground -k 10 "$RUN_TIMEOUT_S" "$ST" "${args[@]}" "${extra[@]}")
}

# fuzz_run RUN: the whole life of one run; meant to run in a subshell with `set -e`.
fuzz_run() {
  RUN=$1
  # Names that an outer environment may also use (CI sets PORT, say) must start empty here.
  PORT='' TOKEN='' SERVER_PID=''
  TAG=$RUN:$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
  DB_NAME=ridelock_fuzz_$(echo "$TAG" | tr -- '-:' '__')
  DB_URL=$(with_database "$DATABASE_URL" "$DB_NAME")
  PREFIX=fuzz:$TAG:
  RUN_ENV=(
    DATABASE_URL="$DB_URL"
    RIDELOCK_REDIS__KEY_PREFIX="$PREFIX"
    RIDELOCK_SERVER__PORT=0
    RIDELOCK_NODE__ID="fuzz-$RUN"
  )
  if [[ $RUN == off ]]; then
    # Only the local profile accepts auth off; it binds 127.0.0.1 too.
    RUN_ENV+=(RIDELOCK_ENV=local RIDELOCK_AUTH__MODE=off)
  else
    RUN_ENV+=(RIDELOCK_ENV=test)
  fi
  rm -rf "${OUT:?}/$RUN" "$OUT/$RUN.log"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  log "$RUN: database $DB_NAME, redis prefix $PREFIX, server log ${OUT#"$ROOT"/}/$RUN.log"
  mint_token
  create_database
  start_server
  run_schemathesis
  abuse_probes
}

# What schemathesis does not send: made-up methods, a sweep of booking ids by one rider, tokens
# at the edges of their lifetime rules (scripts/fuzz_abuse.py).
abuse_probes() {
  local secret
  secret=$(grep -o 'dev-test-auth-secret' "$ROOT/config/test.toml" | head -n 1)
  PORT=$PORT RUN=$RUN TOKEN=${TOKEN:-} DB_URL=$DB_URL AUTH_SECRET=$secret \
    SEED=${FUZZ_SEED:-${SEEDS[$RUN]}} "$VENV/bin/python" "$ROOT/scripts/fuzz_abuse.py"
}

# summary RUN STATUS SECONDS: one line from the run's report.json.
summary() {
  local counts
  counts=$("$VENV/bin/python" -c '
import json, sys
r = json.load(open(sys.argv[1]))
t = r["test_cases"]
print("cases=%d failures=%d errors=%d" % (t["generated"], t["unique_failures"], len(r["errors"])))
' "$OUT/$1/report.json" 2>/dev/null) || counts="no report"
  local verdict=ok
  case $2 in
    0) ;;
    124 | 137) verdict="FAILED (timed out after ${RUN_TIMEOUT_S}s)" ;;
    *) verdict="FAILED (exit $2)" ;;
  esac
  local moves
  moves=$(cat "$OUT/$1/moves" 2>/dev/null)
  printf 'fuzz: %-9s %s %s seconds=%s moved: %s\n' "$1" "$counts" "$verdict" "$3" "${moves:-none}"
}

main() {
  [[ -x $BINARY ]] || die "no executable $BINARY (build it first: cargo build)"
  [[ -n ${DATABASE_URL:-} && -n ${REDIS_URL:-} ]] ||
    die "DATABASE_URL and REDIS_URL must be set: bash scripts/services.sh up test && . var/test/env"
  ensure_schemathesis
  mkdir -p "$OUT"
  # Ctrl-C or SIGTERM: the current run cleans up after itself (its EXIT trap); then stop here.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local run status started lines=() failed=0
  for run in "${RUNS[@]}"; do
    started=$SECONDS
    # `set -e` is off in a subshell whose status is tested, so test it only afterwards.
    set +e
    (
      set -e
      fuzz_run "$run"
    )
    status=$?
    set -e
    lines+=("$(summary "$run" "$status" $((SECONDS - started)))")
    ((status == 0)) || failed=1
    # Ctrl-C: schemathesis stops with 130 and the run cleans up; do not start the next one.
    ((status != 130)) || break
  done
  printf '%s\n' "${lines[@]}" >&2
  return "$failed"
}

main
