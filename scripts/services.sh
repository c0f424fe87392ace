#!/usr/bin/env bash
# Project-local PostgreSQL 15 and Redis for ridelock.
#
#   scripts/services.sh up     PROFILE   start what is missing (idempotent)
#   scripts/services.sh down   PROFILE   stop what `up` started
#   scripts/services.sh status PROFILE   show what runs
#   scripts/services.sh purge  PROFILE   down, then delete its data, secrets and private homes
#   scripts/services.sh start-postgres|stop-postgres|start-redis|stop-redis PROFILE
#   scripts/services.sh freeze-postgres|thaw-postgres PROFILE
#                                        one server only (the chaos tests' faults); a
#                                        stop, freeze or thaw that finds nothing to act on
#                                        fails, so a fault that did not happen cannot pass
#                                        for one. Freeze is SIGSTOP to PostgreSQL's
#                                        processes (a hung server), thaw SIGCONT
#   scripts/services.sh kill-redis-primary|freeze-redis-primary sentinel|rcluster
#                                        SIGKILL / SIGSTOP to the current primary (the one
#                                        the Sentinels name; the cluster's owner of slot 0),
#                                        and print its port on stdout
#   scripts/services.sh thaw-redis sentinel|rcluster
#                                        SIGCONT to every stopped Redis process of the profile
#
#   profile   PostgreSQL        Redis            env file
#   dev       127.0.0.1:25432   127.0.0.1:26379  var/dev/env
#   test      127.0.0.1:25433   127.0.0.1:26380  var/test/env
#   chaos     127.0.0.1:25434   127.0.0.1:26381  var/chaos/env   (tests/chaos stops and
#             restarts these under running nodes; nothing else uses them)
#   sentinel  127.0.0.1:25435   primary :26382, replicas :26383 :26384,  var/sentinel/env
#                               Sentinels :26392-26394 (service ridelock, quorum 2)
#   rcluster  127.0.0.1:25436   Redis Cluster :26400-26405 (3 primaries,  var/rcluster/env
#                               a replica each; cluster bus :26410-26415)
#
# sentinel and rcluster (scripts/services/topologies.sh) are for failover tests. Their
# Redis processes share the profile's password (requirepass, masterauth, the Sentinels'
# auth-pass and requirepass) and each works in a directory of its own, var/<profile>/redisN
# or sentinelN, which identifies it. Their env file also sets RIDELOCK_REDIS__MODE
# (sentinel or cluster), RIDELOCK_REDIS__NODES (the Sentinels' or the nodes' URLs, comma-
# separated) and, for sentinel, RIDELOCK_REDIS__SERVICE_NAME=ridelock; REDIS_URL is the
# URL of the primary when `up` returned (rcluster: of the first node). `up` returns once
# a failover can happen: every replica has synced, each Sentinel knows the primary, both
# replicas and the other Sentinels (rcluster: every node sees cluster_state:ok and no
# node failing, and each primary has a synced replica). `up` and start-redis thaw what
# is frozen, make an old primary that came back a replica of the new one, restart
# whatever is down (an old primary as a replica, after waiting up to 15 s for its
# replica to be promoted), then wait the same way. stop-redis stops all of the profile's
# Redis processes. Data does not survive a restart; a cluster's layout does (nodes.conf).
#
# Those are the preferred ports. They lie below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range, 32768-60999 on Debian) on purpose: a port in
# that range can be the local end of any client connection, even one in
# TIME_WAIT for a minute after it closed, and while it is nothing can listen
# on it. (CI failed that way once: after the api suite's ~2,000 connections,
# the chaos PostgreSQL could not bind its port.) If a preferred port is taken
# by something else, or lies in the ephemeral range of this machine, `up`
# picks a free port outside that range instead and keeps it in
# var/<profile>/ports, so later starts and the env file agree. The chaos
# tests' start-postgres / start-redis never move a server: the nodes already
# hold its URL.
#
# Neither server trusts a local user: PostgreSQL asks for a password
# (scram-sha-256) on TCP, Redis for its requirepass, each a random secret this
# script generates once per profile and keeps in var/<profile>/pg.secret and
# redis.secret (mode 600); the URLs carry them. PostgreSQL's socket lies in
# its data directory, which only its owner can enter. Redis runs as the
# `redis` user, not root. A server's files live under var/<profile>, or, when
# its user cannot enter this checkout, in a private directory made with
# `mktemp -d` (its path kept in var/<profile>/<server>.home), whose owner and
# mode are checked before every use.
#
# `up` writes `export DATABASE_URL=...` and `export REDIS_URL=...` to the env
# file (mode 600) and prints them on stdout, so `eval "$(scripts/services.sh up test)"`
# works; every other message goes to stderr. A DATABASE_URL / REDIS_URL
# already in the environment is used instead of a local server when it
# answers (but not one of the URLs this script hands out: a shell that
# eval'ed the dev env must not make the test profile share dev's data).
set -euo pipefail
shopt -s extglob

# Physical path (-P): /proc/PID/cwd, which identifies our Redis, never shows symlinks.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PG_BIN=/usr/lib/postgresql/15/bin
PROFILES=(dev test chaos sentinel rcluster)
declare -A PG_PORTS=([dev]=25432 [test]=25433 [chaos]=25434 [sentinel]=25435 [rcluster]=25436)
# One Redis in these profiles; sentinel and rcluster run several (TOPOLOGY_PORTS).
declare -A REDIS_PORTS=([dev]=26379 [test]=26380 [chaos]=26381)
# PROFILE:NAME -> preferred port of each process of a topology (scripts/services/topologies.sh):
# Redis servers redisN, sentinels sentinelN, and the cluster bus of rcluster's redisN, busN.
declare -A TOPOLOGY_PORTS=(
  [sentinel:redis1]=26382 [sentinel:redis2]=26383 [sentinel:redis3]=26384
  [sentinel:sentinel1]=26392 [sentinel:sentinel2]=26393 [sentinel:sentinel3]=26394
  [rcluster:redis1]=26400 [rcluster:redis2]=26401 [rcluster:redis3]=26402
  [rcluster:redis4]=26403 [rcluster:redis5]=26404 [rcluster:redis6]=26405
  [rcluster:bus1]=26410 [rcluster:bus2]=26411 [rcluster:bus3]=26412
  [rcluster:bus4]=26413 [rcluster:bus5]=26414 [rcluster:bus6]=26415
)

log() { echo "services: $*" >&2; }
die() { log "error: $*"; exit 1; }

# die_with_log FILE MESSAGE: fail, showing the end of a server log.
die_with_log() {
  log "error: $2; last lines of $1:"
  tail -n 30 "$1" >&2 2>/dev/null || true
  exit 1
}

# wait_for SECONDS CMD...: poll CMD until it succeeds or time runs out.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- ports -----------------------------------------------------------------

read -r EPHEMERAL_LOW EPHEMERAL_HIGH </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null ||
  { EPHEMERAL_LOW=32768 EPHEMERAL_HIGH=60999; }

# usable_port PORT: outside the ephemeral range and nothing listening on it.
usable_port() { (($1 < EPHEMERAL_LOW || $1 > EPHEMERAL_HIGH)) && ! port_in_use "$1"; }

# servers_of PROFILE: the names its ports are kept under in var/PROFILE/ports.
servers_of() {
  case $1 in
    sentinel) echo postgres redis{1..3} sentinel{1..3} ;;
    rcluster) echo postgres redis{1..6} bus{1..6} ;;
    *) echo postgres redis ;;
  esac
}

# preferred_port PROFILE NAME
preferred_port() {
  case $2 in
    postgres) echo "${PG_PORTS[$1]:-}" ;;
    redis) echo "${REDIS_PORTS[$1]:-}" ;;
    *) echo "${TOPOLOGY_PORTS[$1:$2]:-}" ;;
  esac
}

# claimed_port PORT: preferred or recorded by a profile (a server that is down
# now will want it back), or just given to one of this profile's servers.
claimed_port() {
  local claimed=" ${PG_PORTS[*]} ${REDIS_PORTS[*]} ${TOPOLOGY_PORTS[*]} ${TOPO_PORT[*]:-} "
  claimed+=$(cat "$ROOT"/var/*/ports 2>/dev/null | tr '\n' ' ' || true)
  [[ "$claimed " == *" $1 "* ]]
}

# free_port: a usable port between 10000 and the ephemeral range (or above it,
# on a machine whose range starts low) that no profile claims.
free_port() {
  local low=10000 high=$((EPHEMERAL_LOW - 1)) port _
  if ((high - low < 1000)); then low=$((EPHEMERAL_HIGH + 1)) high=65535; fi
  ((high - low >= 1000)) ||
    die "the ephemeral port range $EPHEMERAL_LOW-$EPHEMERAL_HIGH leaves no room for servers; narrow net.ipv4.ip_local_port_range"
  for _ in {1..200}; do
    port=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
    usable_port "$port" && ! claimed_port "$port" && echo "$port" && return 0
  done
  die "found no free port between $low and $high"
}

# port_of PROFILE SERVER: the port recorded in var/PROFILE/ports for SERVER
# (postgres, redis, or a topology's redisN, sentinelN, busN), else the preferred one.
port_of() {
  local recorded
  recorded=$(sed -n "s/^$2 \([0-9]\{1,5\}\)$/\1/p" "$ROOT/var/$1/ports" 2>/dev/null | tail -n 1)
  if [[ -n $recorded ]]; then
    echo "$recorded"
  else
    preferred_port "$1" "$2"
  fi
}

# record_ports: keep this profile's current ports for the next start.
record_ports() {
  local name
  mkdir -p "$VAR_DIR"
  {
    echo "postgres $PG_PORT"
    if is_topology; then
      for name in $(servers_of "$PROFILE"); do
        [[ $name == postgres ]] || echo "$name ${TOPO_PORT[$name]}"
      done
    else
      echo "redis $REDIS_PORT"
    fi
  } >"$VAR_DIR/ports"
}

# move_if_unusable SERVER VAR [NAME]: in `up`, give VAR (PG_PORT, REDIS_PORT, or
# TOPO_PORT[NAME] for a topology's process NAME) a free port if its current one
# cannot be listened on; elsewhere refuse.
move_if_unusable() {
  local port=${!2}
  usable_port "$port" && return 0
  ((MAY_MOVE)) || die "127.0.0.1:$port, where $PROFILE's $1 must listen, is taken" \
    "(see: ss -tanp 'sport = :$port'); not moving it, since the running nodes hold its URL"
  # The preferred port first (a checkout upgraded from the old ports, say).
  local new
  if [[ -n ${3:-} ]]; then
    new=$(preferred_port "$PROFILE" "$3")
  elif [[ $1 == PostgreSQL ]]; then
    new=${PG_PORTS[$PROFILE]}
  else
    new=${REDIS_PORTS[$PROFILE]}
  fi
  if ! usable_port "$new"; then
    new=$(free_port) || exit 1
  fi
  printf -v "$2" %s "$new"
  log "127.0.0.1:$port is taken or inside the ephemeral range $EPHEMERAL_LOW-$EPHEMERAL_HIGH;" \
    "$PROFILE's $1 uses 127.0.0.1:${!2} instead (kept in $VAR_DIR/ports)"
}

# --- secrets ---------------------------------------------------------------

# secret_of PROFILE NAME: the profile's generated password NAME (pg.secret or
# redis.secret), made on first use: 48 hex digits, so it needs no escaping in a URL.
secret_of() {
  local file=$ROOT/var/$1/$2
  if [[ ! -s $file ]]; then
    # The directory stays enterable (the servers' homes may lie in it); the file is ours alone.
    (umask 022 && mkdir -p "$ROOT/var/$1")
    (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$file.new" && mv "$file.new" "$file")
  fi
  cat "$file"
}

# The profile's secret NAME if it has one yet, else nothing: for recognising URLs, which must
# not make secrets (or directories) for profiles nobody started.
existing_secret() { cat "$ROOT/var/$1/$2" 2>/dev/null || true; }

pg_url() { echo "postgres://postgres:$(secret_of "$1" pg.secret)@127.0.0.1:$(port_of "$1" postgres)/ridelock"; }
# Redis 6+ names the requirepass user `default`; redis-cli needs the name in a URL.
redis_url() { echo "redis://default:$(secret_of "$1" redis.secret)@127.0.0.1:$(port_of "$1" redis)/"; }

# A URL this script hands out, or once handed out without a password (any
# profile, preferred or recorded port).
is_project_url() {
  local p pg redis name
  for p in "${PROFILES[@]}"; do
    pg=$(existing_secret "$p" pg.secret) redis=$(existing_secret "$p" redis.secret)
    [[ -n $pg && $1 == "postgres://postgres:$pg@127.0.0.1:$(port_of "$p" postgres)/ridelock" ]] && return 0
    [[ $1 == "postgres://postgres@127.0.0.1:"@(${PG_PORTS[$p]}|$(port_of "$p" postgres))"/ridelock" ]] && return 0
    for name in $(servers_of "$p"); do
      [[ $name == @(redis*|sentinel*) ]] || continue
      [[ -n $redis && $1 == "redis://default:$redis@127.0.0.1:$(port_of "$p" "$name")/" ]] && return 0
    done
    [[ -n ${REDIS_PORTS[$p]:-} ]] || continue
    [[ $1 == "redis://127.0.0.1:"@(${REDIS_PORTS[$p]}|$(port_of "$p" redis))"/" ]] && return 0
  done
  return 1
}

# --- private directories -----------------------------------------------------

# home_for USER SERVER: the directory SERVER's files live in, writable by USER
# only. var/<profile>/<SERVER> when USER can enter this checkout; otherwise a
# directory made by `mktemp -d` under /var/tmp (so its name cannot be guessed
# and planted beforehand), recorded in var/<profile>/<SERVER>.home. Either way
# it must be a real directory (no symlink) owned by USER with mode 700, or
# nothing is started in it.
home_for() {
  local user=$1 server=$2 home record=$VAR_DIR/$2.home
  if as_user "$user" test -x "$VAR_DIR" 2>/dev/null; then
    home=$VAR_DIR/$server
    [[ -L $home ]] && die "$home is a symlink; refusing to use it"
    (umask 077 && mkdir -p "$home")
  else
    home=$(cat "$record" 2>/dev/null || true)
    if [[ -z $home || ! -d $home ]]; then
      home=$(mktemp -d /var/tmp/ridelock-"$PROFILE"-"$server".XXXXXXXXXX)
      echo "$home" >"$record"
      log "user $user cannot enter $ROOT, so $server's files live in $home"
    fi
  fi
  if ((EUID == 0)) && [[ $(stat -c %U "$home") != "$user" ]]; then
    # Only a directory we made may change hands: never one another user owns.
    [[ $(stat -c %u "$home") == 0 ]] || die "$home is owned by $(stat -c %U "$home"), not $user or root"
    chown "$user": "$home"
  fi
  [[ ! -L $home && -d $home ]] || die "$home is not a directory"
  [[ $(stat -c %U "$home") == "$user" ]] || die "$home is owned by $(stat -c %U "$home"), not $user"
  chmod 700 "$home"
  echo "$home"
}

# as_user USER CMD...: CMD as USER (from /, since the caller's directory may
# be closed to that user); as the caller when not root.
as_user() {
  local user=$1
  shift
  if ((EUID == 0)); then
    (cd / && runuser -u "$user" -- "$@")
  else
    "$@"
  fi
}

# --- installation ----------------------------------------------------------

have_redis() { command -v redis-server && command -v redis-cli; } >/dev/null

# The machine image ships PostgreSQL 15 but not Redis: install what is missing
# (redis-sentinel only for the sentinel profile).
ensure_installed() {
  local missing=() policy=/usr/sbin/policy-rc.d added='' status=0
  [[ -x $PG_BIN/initdb ]] || missing+=(postgresql-15)
  have_redis || missing+=(redis-server)
  [[ $PROFILE != sentinel ]] || command -v redis-sentinel >/dev/null || missing+=(redis-sentinel)
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || die "please install: ${missing[*]}"
  log "installing ${missing[*]}"
  # The packages would start system-wide servers (Debian's sentinel on 26379, dev's Redis
  # port); we run our own, so keep them from starting anything (the usual policy-rc.d
  # switch, only if none is in place).
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && added=1
  fi
  apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2 || status=$?
  [[ -z $added ]] || rm -f "$policy"
  ((status == 0)) || die "installing ${missing[*]} failed"
  [[ -x $PG_BIN/initdb ]] || die "$PG_BIN/initdb still missing after install"
  have_redis || die "redis-server/redis-cli still not on PATH after install"
  [[ $PROFILE != sentinel ]] || command -v redis-sentinel >/dev/null ||
    die "redis-sentinel still not on PATH after install"
}

# --- PostgreSQL and Redis: one file each ------------------------------------

# shellcheck source=services/postgres.sh
source "$ROOT/scripts/services/postgres.sh"
# shellcheck source=services/redis.sh
source "$ROOT/scripts/services/redis.sh"
# Sentinel and Cluster: several Redis processes per profile.
# shellcheck source=services/topologies.sh
source "$ROOT/scripts/services/topologies.sh"

# --- faults ----------------------------------------------------------------

# `down` stops whatever runs and is fine with nothing; a fault must have
# stopped something, and it must be gone afterwards.
fault_stop_pg() {
  pg_running || die "PostgreSQL ($PROFILE) is not running: nothing to stop"
  thaw_pg || true
  stop_pg
  ! pg_running || die "PostgreSQL ($PROFILE) is still running after the stop"
  ! pg_ready || die "PostgreSQL ($PROFILE) still accepts connections on 127.0.0.1:$PG_PORT after the stop"
}

# SIGSTOP to the postmaster, then to every process it started: PostgreSQL
# stops answering without closing a connection, as a hung host would. The pids
# are recorded, so that thaw (and down) wake exactly those.
fault_freeze_pg() {
  pg_running || die "PostgreSQL ($PROFILE) is not running: nothing to freeze"
  [[ ! -s $PG_FROZEN ]] || die "PostgreSQL ($PROFILE) is frozen already"
  local postmaster pid
  postmaster=$(as_pg sed -n 1p "$PG_DATA/postmaster.pid")
  # Recorded before each signal, so that a thaw always finds what was stopped.
  echo "$postmaster" >"$PG_FROZEN"
  kill -STOP "$postmaster"
  for pid in $(pgrep -P "$postmaster"); do
    echo "$pid" >>"$PG_FROZEN"
    kill -STOP "$pid" 2>/dev/null || true
  done
  for pid in $(cat "$PG_FROZEN"); do
    wait_for 5 stopped_or_gone "$pid" || die "PostgreSQL ($PROFILE) process $pid did not stop"
  done
  log "froze PostgreSQL ($PROFILE): $(wc -l <"$PG_FROZEN") processes"
}

# True when process $1 is stopped by a signal (state T in /proc, read after the
# command name, which may hold spaces) or has exited.
stopped_or_gone() {
  [[ -e /proc/$1/stat ]] || return 0
  [[ $(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1) == T ]]
}

thaw_pg() {
  [[ -s $PG_FROZEN ]] || return 1
  local pid
  for pid in $(cat "$PG_FROZEN"); do
    kill -CONT "$pid" 2>/dev/null || true
  done
  rm -f "$PG_FROZEN"
  log "thawed PostgreSQL ($PROFILE)"
}

fault_thaw_pg() {
  thaw_pg || die "PostgreSQL ($PROFILE) is not frozen: nothing to thaw"
  wait_for 30 pg_ready || die_with_log "$PG_LOG" "PostgreSQL does not answer after the thaw"
}

fault_stop_redis() {
  our_redis_pid >/dev/null || die "Redis ($PROFILE) is not running: nothing to stop"
  stop_redis
  ! our_redis_pid >/dev/null || die "Redis ($PROFILE) is still running after the stop"
}

# --- commands --------------------------------------------------------------

cmd_up() {
  (umask 022 && mkdir -p "$PG_HOME")
  local db=${DATABASE_URL:-} redis=${REDIS_URL:-}
  if [[ -n $db ]] && ! is_project_url "$db" && pg_reachable "$db"; then
    log "using DATABASE_URL from the environment"
  else
    [[ -z $db ]] || is_project_url "$db" || log "DATABASE_URL from the environment does not answer; ignoring it"
    start_pg
    db=$(pg_url "$PROFILE")
  fi
  if is_topology; then
    # A topology is what this profile is for: never one URL from the environment.
    [[ -z $redis ]] || is_project_url "$redis" || log "ignoring REDIS_URL from the environment: $PROFILE runs its own"
    topology_start
    (umask 077 && { printf 'export DATABASE_URL=%q\n' "$db" && topology_env; } >"$ENV_FILE")
  else
    if [[ -n $redis ]] && ! is_project_url "$redis" && redis_reachable "$redis"; then
      log "using REDIS_URL from the environment"
    else
      [[ -z $redis ]] || is_project_url "$redis" || log "REDIS_URL from the environment does not answer; ignoring it"
      start_redis
      redis=$(redis_url "$PROFILE")
    fi
    (umask 077 && printf 'export DATABASE_URL=%q\nexport REDIS_URL=%q\n' "$db" "$redis" >"$ENV_FILE")
  fi
  log "wrote $ENV_FILE"
  cat "$ENV_FILE"
}

cmd_down() {
  thaw_pg || true
  stop_pg
  if is_topology; then
    topology_down
  else
    stop_redis
  fi
  rm -f "$ENV_FILE"
}

# Stops the profile's servers and deletes everything they kept: var/<profile>
# and the private homes recorded there (each only if still owned by its server's user).
cmd_purge() {
  cmd_down
  local record home
  for record in "$VAR_DIR"/*.home; do
    [[ -f $record ]] || continue
    home=$(cat "$record")
    if [[ $home == /var/tmp/ridelock-* && -d $home && ! -L $home ]]; then
      rm -rf -- "$home"
    fi
  done
  rm -rf -- "$VAR_DIR"
}

# Exits non-zero unless every local server of the profile runs.
cmd_status() {
  local ok=0 pid
  if pg_running; then
    echo "postgres: running, pid $(as_pg sed -n 1p "$PG_DATA/postmaster.pid"), 127.0.0.1:$(as_pg sed -n 4p "$PG_DATA/postmaster.pid"), data $PG_DATA"
  else
    echo "postgres: not running (port $PG_PORT, data $PG_DATA)"
    ok=1
  fi
  if is_topology; then
    topology_status || ok=1
  elif pid=$(our_redis_pid); then
    echo "redis: running, pid $pid, 127.0.0.1:$(running_redis_port "$pid")"
  else
    echo "redis: not running (port $REDIS_PORT)"
    ok=1
  fi
  if [[ -f $ENV_FILE ]]; then
    echo "env file $ENV_FILE:"
    sed 's/^/  /' "$ENV_FILE"
  fi
  return "$ok"
}

usage() {
  echo "usage: $0 up|down|status|purge|start-postgres|stop-postgres|freeze-postgres|thaw-postgres|start-redis|stop-redis ${PROFILES[*]}" >&2
  echo "       $0 kill-redis-primary|freeze-redis-primary|thaw-redis sentinel|rcluster" >&2
  exit 2
}

# The Redis faults that need a primary and its replicas.
topology_only() { is_topology || die "$1 needs a profile with replicas (sentinel or rcluster); $PROFILE has one Redis"; }

main() {
  [[ $# -eq 2 ]] || usage
  case $2 in dev | test | chaos | sentinel | rcluster) ;; *) usage ;; esac
  PROFILE=$2
  # Before anything is made for the profile.
  case $1 in kill-redis-primary | freeze-redis-primary | thaw-redis) topology_only "$1" ;; esac
  PG_PORT=$(port_of "$PROFILE" postgres)
  REDIS_PORT=$(port_of "$PROFILE" redis)
  # Only `up` may move a server to another port (see the top of this file).
  MAY_MOVE=0
  [[ $1 != up ]] || MAY_MOVE=1
  VAR_DIR=$ROOT/var/$PROFILE
  ENV_FILE=$VAR_DIR/env
  # Before the homes, which need the users the packages create.
  [[ $1 != up && $1 != start-* ]] || ensure_installed
  # Enterable by the servers' users, whose homes may lie inside (an older run may have made it 700).
  (umask 022 && mkdir -p "$VAR_DIR") && chmod 755 "$VAR_DIR"
  if is_topology; then
    topology_init
  else
    REDIS_HOME=$(home_for "$(redis_user)" redis)
    REDIS_PIDFILE=$REDIS_HOME/redis.pid
    REDIS_LOG=$REDIS_HOME/redis.log
  fi
  PG_HOME=$(pg_home)
  PG_DATA=$PG_HOME/pg
  PG_LOG=$PG_HOME/pg.log
  PG_FROZEN=$VAR_DIR/pg.frozen
  case $1 in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    purge) cmd_purge ;;
    start-postgres) start_pg ;;
    stop-postgres) fault_stop_pg ;;
    freeze-postgres) fault_freeze_pg ;;
    thaw-postgres) fault_thaw_pg ;;
    start-redis) if is_topology; then topology_start; else mkdir -p "$VAR_DIR" && start_redis; fi ;;
    stop-redis) if is_topology; then fault_stop_topology; else fault_stop_redis; fi ;;
    kill-redis-primary) fault_kill_primary ;;
    freeze-redis-primary) fault_freeze_primary ;;
    thaw-redis) fault_thaw_redis ;;
    *) usage ;;
  esac
}

main "$@"
