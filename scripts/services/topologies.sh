# Sourced by scripts/services.sh (never run alone): the Redis of profiles sentinel (a primary,
# two replicas and three Sentinels) and rcluster (a Redis Cluster of six nodes, three
# primaries with a replica each): start, readiness, stop, status, and the faults the chaos
# tests inject. Uses the profile's variables and the helpers of services.sh (log, die,
# wait_for, as_user, home_for, ports, secrets) and redis.sh (redis_user).
# shellcheck shell=bash

# The name the Sentinels monitor the primary under.
SERVICE_NAME=ridelock
# How long a primary may not answer before a Sentinel thinks it down. At 1000 (Sentinel's
# ping period) a Sentinel that has just switched to a new primary may, rarely, think it
# down for a moment ~1 s later (its first PING to it can wait that long), and two doing so
# at once run a needless second failover: seen once in ~40 failovers here. 1500 rules that
# out, at ~0.5 s more per failover; the chaos suite's failover targets count with it
# (tests/chaos/redis_failover.rs).
SENTINEL_DOWN_AFTER_MS=1500
# Set by topology_init: the processes by name (redisN: servers, sentinelN), the
# directory each works in (which identifies it, as for the single Redis), and the
# port of each, busN being the cluster bus of rcluster's redisN.
TOPO_SERVERS=()
TOPO_SENTINELS=()
declare -A TOPO_HOME=() TOPO_PORT=()

is_topology() { [[ $PROFILE == sentinel || $PROFILE == rcluster ]]; }

topology_init() {
  local name pid
  case $PROFILE in
    sentinel) TOPO_SERVERS=(redis{1..3}) TOPO_SENTINELS=(sentinel{1..3}) ;;
    rcluster) TOPO_SERVERS=(redis{1..6}) TOPO_SENTINELS=() ;;
  esac
  # Every process has the same password: requirepass, masterauth, Sentinel's auth-pass.
  TOPO_PW=$(secret_of "$PROFILE" redis.secret)
  for name in $(servers_of "$PROFILE"); do
    [[ $name == postgres ]] || TOPO_PORT[$name]=$(port_of "$PROFILE" "$name")
  done
  for name in "${TOPO_SERVERS[@]}" "${TOPO_SENTINELS[@]}"; do
    TOPO_HOME[$name]=$(home_for "$(redis_user)" "$name")
    # A running process keeps the port it listens on, whatever was recorded.
    if pid=$(topo_pid "$name"); then
      TOPO_PORT[$name]=$(running_redis_port "$pid")
    fi
  done
}

# --- processes -------------------------------------------------------------

# topo_pid NAME: from NAME's pidfile, only if that process is a redis-server (a
# redis-sentinel for sentinelN) working in NAME's directory.
topo_pid() {
  local pid comm=redis-server home=${TOPO_HOME[$1]}
  [[ $1 != sentinel* ]] || comm=redis-sentinel
  pid=$(cat "$home/redis.pid" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$comm" ]] || return 1
  [[ $(readlink "/proc/$pid/cwd") == "$home" ]] && echo "$pid"
}
topo_running() { topo_pid "$1" >/dev/null; }
topo_log() { echo "${TOPO_HOME[$1]}/redis.log"; }

proc_state() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1; }
proc_stopped() { [[ $(proc_state "$1") == T ]]; }
# Gone, or a zombie nobody has reaped yet.
proc_gone() { [[ ! -e /proc/$1/stat || $(proc_state "$1") == Z ]]; }

# rcli PORT ARGS...: one command to our Redis on PORT, password from the environment
# (never the command line), and a timeout, since a frozen one never answers.
rcli() {
  local port=$1
  shift
  REDISCLI_AUTH=$TOPO_PW timeout 2 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null | tr -d '\r'
}
topo_cli() {
  local name=$1
  shift
  rcli "${TOPO_PORT[$name]}" "$@"
}
topo_ping() { [[ $(topo_cli "$1" ping) == PONG ]]; }
# info_field NAME SECTION FIELD: from INFO SECTION, or CLUSTER INFO for section cluster.
info_field() {
  if [[ $2 == cluster ]]; then
    topo_cli "$1" CLUSTER INFO | sed -n "s/^$3://p"
  else
    topo_cli "$1" INFO "$2" | sed -n "s/^$3://p"
  fi
}
topo_url() { echo "redis://default:$TOPO_PW@127.0.0.1:$1/"; }

# name_at PORT: which of our servers listens on PORT.
name_at() {
  local name
  for name in "${TOPO_SERVERS[@]}"; do
    [[ ${TOPO_PORT[$name]} != "$1" ]] || { echo "$name" && return 0; }
  done
  return 1
}

any_server_running() {
  local name
  for name in "${TOPO_SERVERS[@]}"; do topo_running "$name" && return 0; done
  return 1
}

# topo_up_or_refused NAME FROM_LINE: answering, or its log says it could not bind.
topo_up_or_refused() { topo_ping "$1" || bind_refused "$(topo_log "$1")" "$2"; }

# topo_launch NAME [PRIMARY_PORT]: start process NAME (a replica of PRIMARY_PORT if given)
# and wait until it answers. Like the single Redis: a taken port moves in `up` only.
topo_launch() {
  local name=$1 primary=${2:-} attempt mark logfile bus=
  logfile=$(topo_log "$name")
  [[ $PROFILE != rcluster ]] || bus=bus${name#redis}
  for attempt in 1 2 3 4 5; do
    move_if_unusable "Redis $name" "TOPO_PORT[$name]" "$name"
    [[ -z $bus ]] || move_if_unusable "Redis $name (cluster bus)" "TOPO_PORT[$bus]" "$bus"
    log "starting $name ($PROFILE) on 127.0.0.1:${TOPO_PORT[$name]}${primary:+, a replica of 127.0.0.1:$primary}"
    mark=$(lines_in "$logfile")
    if [[ $name == sentinel* ]]; then
      launch_sentinel "$name"
    else
      launch_server "$name" "$primary"
    fi
    # Daemonized, it reports a failed bind only in its log.
    wait_for 15 topo_up_or_refused "$name" "$mark" || die_with_log "$logfile" "$name ($PROFILE) is not answering PING"
    topo_ping "$name" && break
    ((MAY_MOVE && attempt < 5)) || die_with_log "$logfile" "$name ($PROFILE) could not listen on 127.0.0.1:${TOPO_PORT[$name]}"
    log "a port of $name was taken before it could listen on it"
    TOPO_PORT[$name]=$(free_port) || exit 1
    [[ -z $bus ]] || TOPO_PORT[$bus]=$(free_port) || exit 1
  done
  record_ports
}

# The passwords go in on stdin (config "-"), never on a command line.
launch_server() {
  local name=$1 primary=$2 home=${TOPO_HOME[$1]} args
  args=(--port "${TOPO_PORT[$name]}" --bind 127.0.0.1 --daemonize yes
    --pidfile "$home/redis.pid" --dir "$home" --logfile "$home/redis.log"
    --save '' --appendonly no
    # A replica's first sync starts at once rather than after 5 s (waiting for others),
    # and loads from the socket: no dump.rdb, so that a server starts empty like the
    # single Redis of the other profiles, rather than from what it once synced.
    --repl-diskless-sync-delay 0 --repl-diskless-load swapdb)
  if [[ $PROFILE == rcluster ]]; then
    # nodes.conf, in its directory, is the node's identity and its view of the cluster.
    args+=(--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
      --cluster-port "${TOPO_PORT[bus${name#redis}]}")
  elif [[ -n $primary ]]; then
    args+=(--replicaof 127.0.0.1 "$primary")
  fi
  as_redis rm -f "$home/dump.rdb"
  printf 'requirepass %s\nmasterauth %s\n' "$TOPO_PW" "$TOPO_PW" | as_redis redis-server - "${args[@]}" >&2
}

# as_redis CMD...: CMD as the Redis user, with umask 077: what it writes (a rewritten
# sentinel.conf, which holds the password; nodes.conf; logs) is its user's alone.
as_redis() { as_user "$(redis_user)" bash -c 'umask 077 && exec "$@"' _ "$@"; }

# A Sentinel rewrites its configuration file (what it learned: the primary, replicas,
# other Sentinels, epochs), so each has one of its own, in its directory, written by
# its user (mode 600: it holds the password). What is not state goes on the command line.
launch_sentinel() {
  local name=$1 home=${TOPO_HOME[$1]}
  [[ -s $home/sentinel.conf ]] || die "$home/sentinel.conf is missing"
  as_redis redis-sentinel "$home/sentinel.conf" --port "${TOPO_PORT[$name]}" \
    --bind 127.0.0.1 --daemonize yes --pidfile "$home/redis.pid" --dir "$home" \
    --logfile "$home/redis.log" >&2
}

# write_sentinel_config NAME PRIMARY_PORT: a fresh configuration (a new Sentinel
# identity, no state) monitoring the primary on PRIMARY_PORT. requirepass protects the
# Sentinel itself, and is what it authenticates to the other Sentinels with.
write_sentinel_config() {
  printf '%s\n' "requirepass $TOPO_PW" \
    "sentinel monitor $SERVICE_NAME 127.0.0.1 $2 2" \
    "sentinel down-after-milliseconds $SERVICE_NAME $SENTINEL_DOWN_AFTER_MS" \
    "sentinel failover-timeout $SERVICE_NAME 5000" \
    "sentinel parallel-syncs $SERVICE_NAME 1" \
    "sentinel auth-pass $SERVICE_NAME $TOPO_PW" |
    as_redis bash -c 'cat >"$1.new" && mv -f "$1.new" "$1"' _ "${TOPO_HOME[$1]}/sentinel.conf"
}

# stop_processes NAME...: SIGTERM to those that run, then wait for all; fails if none ran.
stop_processes() {
  local name pid pids=()
  for name in "$@"; do
    pid=$(topo_pid "$name") || continue
    log "stopping $name ($PROFILE, pid $pid)"
    kill "$pid"
    pids+=("$pid")
  done
  for pid in "${pids[@]}"; do
    # A primary waits up to 10 s (shutdown-timeout) for its replicas to catch up.
    wait_for 20 proc_gone "$pid" || die "Redis process $pid ($PROFILE) did not exit"
  done
  ((${#pids[@]}))
}

# thaw_topology: SIGCONT to every process of ours that is stopped; fails if none was.
thaw_topology() {
  local name pid thawed=0
  for name in "${TOPO_SERVERS[@]}" "${TOPO_SENTINELS[@]}"; do
    pid=$(topo_pid "$name") && proc_stopped "$pid" || continue
    kill -CONT "$pid"
    log "thawed $name ($PROFILE, pid $pid, 127.0.0.1:${TOPO_PORT[$name]})"
    thawed=1
  done
  ((thawed))
}

# --- Sentinel --------------------------------------------------------------

# The port of the primary, as the first of our Sentinels that answers names it.
sentinel_master_port() {
  local name port
  for name in "${TOPO_SENTINELS[@]}"; do
    topo_running "$name" || continue
    port=$(topo_cli "$name" SENTINEL get-master-addr-by-name "$SERVICE_NAME" | sed -n 2p)
    [[ $port =~ ^[0-9]+$ ]] && echo "$port" && return 0
  done
  return 1
}

# Among the running servers, the primary with the most replicas (no Sentinel to ask).
running_master() {
  local name best='' most=-1 replicas
  for name in "${TOPO_SERVERS[@]}"; do
    topo_running "$name" && [[ $(info_field "$name" replication role) == master ]] || continue
    replicas=$(info_field "$name" replication connected_slaves)
    ((${replicas:-0} > most)) && best=$name most=${replicas:-0}
  done
  [[ -n $best ]] && echo "$best"
}

# sentinel_moved_from PORT: the Sentinels name another primary, and it runs.
sentinel_moved_from() {
  local port name
  port=$(sentinel_master_port) && [[ $port != "$1" ]] && name=$(name_at "$port") && topo_running "$name"
}

# The server that is (or is to be) the primary. A primary that is down while a replica
# runs will be replaced by the Sentinels: wait for that, so that it comes back as a replica
# rather than as an empty primary the replicas would copy.
sentinel_primary() {
  local port name
  if port=$(sentinel_master_port) && name=$(name_at "$port"); then
    if ! topo_running "$name" && any_server_running; then
      log "the Sentinels still name $name (127.0.0.1:$port), which is down, the primary; waiting for a failover"
      if wait_for 15 sentinel_moved_from "$port"; then
        port=$(sentinel_master_port) && name=$(name_at "$port") || die "lost the Sentinels' answer"
      else
        log "no replica was promoted within 15 s; $name comes back as the primary"
      fi
    fi
    echo "$name"
  else
    running_master || echo "${TOPO_SERVERS[0]}"
  fi
}

# "port flags" for each replica Sentinel NAME knows.
sentinel_replicas() {
  topo_cli "$1" SENTINEL replicas "$SERVICE_NAME" | awk '
    NR % 2 { key = $0; next }
    key == "name" && port != "" { print port, flags; port = "" }
    key == "port" { port = $0 }
    key == "flags" { flags = $0 }
    END { if (port != "") print port, flags }'
}

# sentinel_field NAME FIELD: FIELD of what Sentinel NAME knows of the primary.
sentinel_field() {
  topo_cli "$1" SENTINEL master "$SERVICE_NAME" | awk -v want="$2" 'NR % 2 { key = $0; next } key == want { print; exit }'
}

# Every replica has synced with the primary, and each Sentinel names that primary,
# sees it up, knows both replicas and sees them up (flags just "slave": a Sentinel
# considers those for promotion), and knows the two other Sentinels. (What a Sentinel
# knows of a replica's link comes from INFO it asks for every 10 s: the replica's own
# INFO says it sooner.)
sentinel_ready() {
  local port name replicas server
  port=$(sentinel_master_port) && name=$(name_at "$port") || return 1
  [[ $(info_field "$name" replication role) == master ]] || return 1
  for name in "${TOPO_SERVERS[@]}"; do
    [[ ${TOPO_PORT[$name]} != "$port" ]] || continue
    [[ $(info_field "$name" replication master_port) == "$port" &&
      $(info_field "$name" replication master_link_status) == up ]] || return 1
  done
  for name in "${TOPO_SENTINELS[@]}"; do
    [[ $(topo_cli "$name" SENTINEL get-master-addr-by-name "$SERVICE_NAME" | sed -n 2p) == "$port" ]] || return 1
    [[ $(sentinel_field "$name" flags) == master ]] || return 1
    [[ $(sentinel_field "$name" num-other-sentinels) == $((${#TOPO_SENTINELS[@]} - 1)) ]] || return 1
    replicas=$(sentinel_replicas "$name")
    for server in "${TOPO_SERVERS[@]}"; do
      [[ ${TOPO_PORT[$server]} == "$port" ]] ||
        grep -qx "${TOPO_PORT[$server]} slave" <<<"$replicas" || return 1
    done
  done
}

# demote_stray_primaries PRIMARY: a running server other than PRIMARY that says it is a
# primary (an old primary thawed after the failover) is made a replica of PRIMARY now:
# the Sentinels would do the same, but only once it has said so for 8 s.
demote_stray_primaries() {
  local name port=${TOPO_PORT[$1]}
  [[ $(info_field "$1" replication role) == master ]] || return 0
  for name in "${TOPO_SERVERS[@]}"; do
    [[ $name != "$1" ]] && topo_running "$name" || continue
    [[ $(info_field "$name" replication role) == master ]] || continue
    log "$name (127.0.0.1:${TOPO_PORT[$name]}) is a primary besides $1; making it a replica of 127.0.0.1:$port"
    [[ $(topo_cli "$name" REPLICAOF 127.0.0.1 "$port") == OK ]] || die "REPLICAOF failed on $name"
  done
}

# Starts whatever of the sentinel topology is not running: the primary, the replicas
# (replicaof the primary), and the Sentinels. With no Sentinel running, their
# configuration is written afresh around the current primary.
sentinel_start() {
  local primary name
  thaw_topology || true
  primary=$(sentinel_primary)
  # (`if`, not `||`: set -e must hold inside topo_launch.)
  if ! topo_running "$primary"; then topo_launch "$primary"; fi
  for name in "${TOPO_SERVERS[@]}"; do
    if [[ $name != "$primary" ]] && ! topo_running "$name"; then
      topo_launch "$name" "${TOPO_PORT[$primary]}"
    fi
  done
  demote_stray_primaries "$primary"
  local fresh=1
  for name in "${TOPO_SENTINELS[@]}"; do
    ! topo_running "$name" || fresh=0
  done
  for name in "${TOPO_SENTINELS[@]}"; do
    topo_running "$name" && continue
    if ((fresh)) || [[ ! -s ${TOPO_HOME[$name]}/sentinel.conf ]]; then
      write_sentinel_config "$name" "${TOPO_PORT[$primary]}"
    fi
    topo_launch "$name"
  done
  log "waiting for the replicas to sync and the Sentinels to know them and each other"
  wait_for 60 sentinel_ready || die "the sentinel topology ($PROFILE) is not ready after 60 s; see $(topo_log redis1) …"
}

# --- Cluster ---------------------------------------------------------------

# CLUSTER NODES from the first running node that answers.
cluster_view() {
  local name view
  for name in "${TOPO_SERVERS[@]}"; do
    topo_running "$name" || continue
    view=$(topo_cli "$name" CLUSTER NODES) && [[ -n $view ]] && echo "$view" && return 0
  done
  return 1
}

# owns_slots VIEW PORT: the node on PORT is a primary serving slots in VIEW.
owns_slots() {
  awk -v addr="127.0.0.1:$2@" 'index($2, addr) == 1 && $3 ~ /master/ && NF >= 9 { found = 1 } END { exit !found }' <<<"$1"
}

# replica_ports VIEW PORT: the ports of the replicas of the node on PORT.
replica_ports() {
  awk -v addr="127.0.0.1:$2@" '
    { split($2, a, /[:@]/); port[$1] = a[2]; master[$1] = $4 }
    index($2, addr) == 1 { id = $1 }
    END { for (n in master) if (id != "" && master[n] == id) print port[n] }' <<<"$1"
}

# A primary that is down while a replica of it runs: wait until the replica has taken over
# its slots, so that it comes back as a replica (the cluster makes it one).
cluster_wait_for_failovers() {
  local view name port replica
  view=$(cluster_view) || return 0
  for name in "${TOPO_SERVERS[@]}"; do
    port=${TOPO_PORT[$name]}
    ! topo_running "$name" && owns_slots "$view" "$port" || continue
    for replica in $(replica_ports "$view" "$port"); do
      replica=$(name_at "$replica") && topo_running "$replica" || continue
      log "$name (127.0.0.1:$port) is down and still serves slots; waiting for $replica to take over"
      wait_for 15 cluster_lost_slots "$port" ||
        log "$replica did not take over within 15 s; $name comes back as a primary"
      view=$(cluster_view) || return 0
      break
    done
  done
}
cluster_lost_slots() {
  local view
  view=$(cluster_view) && ! owns_slots "$view" "$1"
}

# Creates the cluster when every node is new (knows only itself); a cluster created
# before is left to the nodes, whose nodes.conf remembers it.
cluster_create_if_new() {
  local name alone=() addrs=()
  for name in "${TOPO_SERVERS[@]}"; do
    [[ $(info_field "$name" cluster cluster_known_nodes) != 1 ]] || alone+=("$name")
    addrs+=("127.0.0.1:${TOPO_PORT[$name]}")
  done
  ((${#alone[@]})) || return 0
  ((${#alone[@]} == ${#TOPO_SERVERS[@]})) ||
    die "${alone[*]} ($PROFILE) know no other node while the rest form a cluster;" \
      "start afresh: scripts/services.sh purge $PROFILE && scripts/services.sh up $PROFILE"
  log "creating the Redis Cluster: 3 primaries with a replica each"
  REDISCLI_AUTH=$TOPO_PW redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >&2 ||
    die "redis-cli --cluster create failed"
}

# Every node sees the cluster ok, all six nodes and none failing; every replica has synced;
# and each of the three primaries has a replica connected.
cluster_ready() {
  local name view
  for name in "${TOPO_SERVERS[@]}"; do
    [[ $(info_field "$name" cluster cluster_state) == ok &&
      $(info_field "$name" cluster cluster_known_nodes) == "${#TOPO_SERVERS[@]}" ]] || return 1
    view=$(topo_cli "$name" CLUSTER NODES) || return 1
    ! awk '$3 ~ /fail|handshake|noaddr/ { bad = 1 } END { exit !bad }' <<<"$view" || return 1
    [[ $(info_field "$name" replication role) == master ||
      $(info_field "$name" replication master_link_status) == up ]] || return 1
  done
  awk -v want=$((${#TOPO_SERVERS[@]} / 2)) '
    $3 ~ /master/ && NF >= 9 { primary[$1] = 1 }
    $3 ~ /slave/ && $8 == "connected" { covered[$4] = 1 }
    END { for (id in primary) { if (!(id in covered)) exit 1; n++ } exit n != want }' <<<"$view"
}

cluster_start() {
  local name
  thaw_topology || true
  cluster_wait_for_failovers
  for name in "${TOPO_SERVERS[@]}"; do
    if ! topo_running "$name"; then topo_launch "$name"; fi
  done
  cluster_create_if_new
  log "waiting for cluster_state:ok and every replica to sync"
  wait_for 60 cluster_ready || die "the Redis Cluster ($PROFILE) is not ready after 60 s; see $(topo_log redis1) …"
}

# The port of the primary serving slot 0, else of the first primary, as the cluster sees it.
cluster_primary_port() {
  local view
  view=$(cluster_view) || return 1
  awk '$3 ~ /master/ && $3 !~ /fail/ {
      split($2, a, /[:@]/)
      if (first == "") first = a[2]
      for (i = 9; i <= NF; i++) {
        n = split($i, r, "-")
        if ($i !~ /^\[/ && r[1] == 0) { print a[2]; found = 1; exit }
      }
    }
    END { if (!found && first != "") print first; else if (!found) exit 1 }' <<<"$view"
}

# --- what services.sh calls ------------------------------------------------

topology_start() {
  if [[ $PROFILE == sentinel ]]; then sentinel_start; else cluster_start; fi
}

topology_down() {
  thaw_topology || true
  # The Sentinels first, so that they do not fail over while the servers stop.
  stop_processes "${TOPO_SENTINELS[@]}" || true
  stop_processes "${TOPO_SERVERS[@]}" || log "no Redis of $PROFILE running"
}

# The current primary's port (Sentinel's answer, or the cluster's slot 0).
topology_primary_port() {
  if [[ $PROFILE == sentinel ]]; then sentinel_master_port; else cluster_primary_port; fi
}

# primary_pid VERB: the current primary's name and pid ("NAME PID PORT"), or fail.
primary_process() {
  local port name pid
  port=$(topology_primary_port) || die "found no Redis primary of $PROFILE to $1"
  name=$(name_at "$port") || die "the primary, 127.0.0.1:$port, is none of $PROFILE's Redis servers"
  pid=$(topo_pid "$name") || die "the primary, $name (127.0.0.1:$port), is not running: nothing to $1"
  echo "$name $pid $port"
}

fault_kill_primary() {
  local name pid port
  read -r name pid port <<<"$(primary_process kill)"
  [[ -n $port ]] || exit 1
  log "killing the Redis primary $name ($PROFILE, pid $pid, 127.0.0.1:$port) with SIGKILL"
  kill -KILL "$pid"
  wait_for 5 proc_gone "$pid" || die "$name (pid $pid) did not exit"
  echo "$port"
}

fault_freeze_primary() {
  local name pid port
  read -r name pid port <<<"$(primary_process freeze)"
  [[ -n $port ]] || exit 1
  ! proc_stopped "$pid" || die "the primary $name (127.0.0.1:$port) is frozen already"
  log "freezing the Redis primary $name ($PROFILE, pid $pid, 127.0.0.1:$port) with SIGSTOP"
  kill -STOP "$pid"
  wait_for 5 stopped_or_gone "$pid" || die "$name (pid $pid) did not stop"
  echo "$port"
}

fault_thaw_redis() {
  local name
  thaw_topology || die "no Redis process of $PROFILE is stopped: nothing to thaw"
  for name in "${TOPO_SERVERS[@]}" "${TOPO_SENTINELS[@]}"; do
    ! topo_running "$name" || wait_for 10 topo_ping "$name" || die "$name ($PROFILE) does not answer after the thaw"
  done
}

# stop-redis: every Redis process of the profile; fails if none ran.
fault_stop_topology() {
  thaw_topology || true
  local stopped=0
  ! stop_processes "${TOPO_SENTINELS[@]}" || stopped=1
  ! stop_processes "${TOPO_SERVERS[@]}" || stopped=1
  ((stopped)) || die "no Redis of $PROFILE is running: nothing to stop"
}

# The env file's Redis lines: REDIS_URL (the primary, or the first node) and the mode.
topology_env() {
  local name urls=() primary
  if [[ $PROFILE == sentinel ]]; then
    primary=$(sentinel_master_port) || die "no Sentinel answers"
    printf 'export REDIS_URL=%q\n' "$(topo_url "$primary")"
    for name in "${TOPO_SENTINELS[@]}"; do urls+=("$(topo_url "${TOPO_PORT[$name]}")"); done
    printf 'export RIDELOCK_REDIS__MODE=sentinel\n'
  else
    printf 'export REDIS_URL=%q\n' "$(topo_url "${TOPO_PORT[${TOPO_SERVERS[0]}]}")"
    for name in "${TOPO_SERVERS[@]}"; do urls+=("$(topo_url "${TOPO_PORT[$name]}")"); done
    printf 'export RIDELOCK_REDIS__MODE=cluster\n'
  fi
  # Not %q, which would write "\," for each comma: the chaos tests read these lines as they
  # are (tests/support/services.rs), and the URLs hold nothing a shell would change.
  printf 'export RIDELOCK_REDIS__NODES=%s\n' "$(IFS=, && echo "${urls[*]}")"
  [[ $PROFILE != sentinel ]] || printf 'export RIDELOCK_REDIS__SERVICE_NAME=%s\n' "$SERVICE_NAME"
}

# One line per process; fails unless all run.
topology_status() {
  local name pid port state ok=0
  for name in "${TOPO_SERVERS[@]}" "${TOPO_SENTINELS[@]}"; do
    port=${TOPO_PORT[$name]}
    if ! pid=$(topo_pid "$name"); then
      echo "$name: not running (port $port)"
      ok=1
      continue
    fi
    if proc_stopped "$pid"; then
      state="frozen (SIGSTOP)"
    elif [[ $name == sentinel* ]]; then
      state="sentinel, primary 127.0.0.1:$(topo_cli "$name" SENTINEL get-master-addr-by-name "$SERVICE_NAME" | sed -n 2p)"
    elif [[ $(info_field "$name" replication role) == slave ]]; then
      state="replica of 127.0.0.1:$(info_field "$name" replication master_port), link $(info_field "$name" replication master_link_status)"
    else
      state=primary
    fi
    echo "$name: running, pid $pid, 127.0.0.1:$port, $state"
  done
  return "$ok"
}
