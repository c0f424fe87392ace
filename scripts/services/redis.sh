# Sourced by scripts/services.sh (never run alone): the project-local Redis: its user, files, start and stop. Uses the
# profile's variables and the helpers (log, die, wait_for, as_user, ports,
# secrets) that services.sh defines before sourcing it.
# shellcheck shell=bash

# --- Redis -----------------------------------------------------------------

# The user Redis runs as: never root.
redis_user() {
  if ((EUID != 0)); then
    id -un
  elif id redis >/dev/null 2>&1; then
    echo redis
  else
    echo nobody
  fi
}

# PID from our pidfile, only if that process is a redis-server working in our
# directory (the PID may have been reused since the pidfile was written).
our_redis_pid() {
  local pid
  pid=$(cat "$REDIS_PIDFILE" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server ]] || return 1
  [[ $(readlink "/proc/$pid/cwd") == "$REDIS_HOME" ]] && echo "$pid"
}

# The port our running Redis listens on (its title reads "redis-server 127.0.0.1:PORT").
running_redis_port() { tr '\0' ' ' <"/proc/$1/cmdline" | sed -n 's/.*:\([0-9]\{1,5\}\).*/\1/p'; }

redis_ready() {
  [[ $(REDISCLI_AUTH=$(secret_of "$PROFILE" redis.secret) redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}
redis_reachable() { [[ $(timeout 5 redis-cli -u "$1" ping 2>/dev/null) == PONG ]]; }

# redis_up_or_refused FROM_LINE: ready, or its log says it could not bind.
redis_up_or_refused() { redis_ready || bind_refused "$REDIS_LOG" "$1"; }

# A Redis an older checkout started: as root, without a password, its pidfile and
# working directory var/<profile> itself. Stopped, so that ours can take its port.
stop_legacy_redis() {
  local pid
  pid=$(cat "$VAR_DIR/redis.pid" 2>/dev/null) && [[ $pid =~ ^[0-9]+$ ]] || return 0
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == redis-server ]] || return 0
  [[ $(readlink "/proc/$pid/cwd") == "$VAR_DIR" ]] || return 0
  log "stopping Redis ($PROFILE, pid $pid) started by an older version of this script"
  kill "$pid"
  wait_for 15 test ! -e "/proc/$pid" || die "Redis (pid $pid) did not exit"
  rm -f "$VAR_DIR/redis.pid"
}

start_redis() {
  local pid
  stop_legacy_redis
  if pid=$(our_redis_pid); then
    REDIS_PORT=$(running_redis_port "$pid")
    [[ -n $REDIS_PORT ]] || die "cannot tell which port Redis (pid $pid) listens on; stop it (kill $pid) and retry"
    log "Redis ($PROFILE) already running on 127.0.0.1:$REDIS_PORT"
  else
    local attempt mark
    for attempt in 1 2 3 4 5; do
      move_if_unusable Redis REDIS_PORT
      log "starting Redis ($PROFILE) on 127.0.0.1:$REDIS_PORT"
      mark=$(lines_in "$REDIS_LOG")
      # The password goes in on stdin (config "-"), never on a command line.
      printf 'requirepass %s\n' "$(secret_of "$PROFILE" redis.secret)" |
        as_user "$(redis_user)" redis-server - --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
          --pidfile "$REDIS_PIDFILE" --dir "$REDIS_HOME" --logfile "$REDIS_LOG" \
          --save '' --appendonly no >&2
      # Daemonized, it reports a failed bind only in its log.
      wait_for 15 redis_up_or_refused "$mark" || die_with_log "$REDIS_LOG" "Redis is not answering PING"
      redis_ready && break
      ((MAY_MOVE && attempt < 5)) || die_with_log "$REDIS_LOG" "Redis could not listen on 127.0.0.1:$REDIS_PORT"
      log "127.0.0.1:$REDIS_PORT was taken before Redis could listen on it"
      REDIS_PORT=$(free_port) || exit 1
    done
  fi
  # Also covers a server that was running but not answering yet.
  wait_for 15 redis_ready || die_with_log "$REDIS_LOG" "Redis is not answering PING"
  record_ports
}

stop_redis() {
  local pid
  if pid=$(our_redis_pid); then
    log "stopping Redis ($PROFILE, pid $pid)"
    kill "$pid"
    wait_for 15 test ! -e "/proc/$pid" || die "Redis (pid $pid) did not exit"
  else
    log "Redis ($PROFILE) not running"
  fi
}

