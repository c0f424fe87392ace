# Sourced by scripts/services.sh (never run alone): the project-local PostgreSQL: files, start, stop, freeze and thaw. Uses the
# profile's variables and the helpers (log, die, wait_for, as_user, ports,
# secrets) that services.sh defines before sourcing it.
# shellcheck shell=bash

# --- PostgreSQL ------------------------------------------------------------

# The server refuses to run as root, so as root its tools run as postgres.
as_pg() { as_user postgres "$@"; }

# Where the cluster (pg/) and its log (pg.log) live: var/<profile> (as before
# passwords, so existing clusters stay where they are) when the postgres user
# can enter this checkout; otherwise a private directory (home_for).
pg_home() {
  if as_pg test -x "$VAR_DIR" 2>/dev/null; then
    echo "$VAR_DIR"
  else
    home_for postgres pg-home
  fi
}

pg_running() { as_pg "$PG_BIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; }
pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres; }
pg_reachable() { PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" "$1" -Atqc 'select 1' >/dev/null 2>&1; }
# Over TCP, with the password (in the environment, which other users cannot read).
pg_psql() {
  PGPASSWORD=$(secret_of "$PROFILE" pg.secret) \
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atq "$@"
}
# Over the socket in the data directory, which only postgres can enter: how the
# password is set in the first place.
pg_socket_psql() { as_pg "$PG_BIN/psql" -h "$PG_DATA" -p "$PG_PORT" -U postgres -d postgres -Atq "$@"; }

# pg_ctl opens the log and the server its data dir as postgres, so hand
# both to that user; done on every start in case the log was deleted. They are
# made here, in a directory only root (var/) or postgres (a private home) can
# write, so neither can be a link planted by someone else; a link is refused anyway.
prepare_pg_files() {
  local path
  for path in "$PG_DATA" "$PG_LOG"; do
    [[ ! -L $path ]] || die "$path is a symlink; refusing to hand it to postgres"
  done
  (umask 077 && mkdir -p "$PG_DATA")
  (umask 077 && touch "$PG_LOG")
  if ((EUID == 0)); then chown postgres: "$PG_DATA" "$PG_LOG"; fi
  as_pg test -w "$PG_DATA" ||
    die "user postgres cannot write $PG_DATA; a parent directory is not traversable (chmod o+x it)"
}

# Who may connect how, written on every start (an existing cluster of an
# older checkout, which trusted every local user, is switched over): TCP needs
# the password; the socket, in the data directory only postgres can enter, is
# how this script sets that password.
write_pg_hba() {
  printf '%s\n' \
    '# Written by scripts/services.sh on every start.' \
    'local all all trust' \
    'host all all 127.0.0.1/32 scram-sha-256' \
    'host all all ::1/128 scram-sha-256' | as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null
}

# Sets the postgres role's password to this profile's secret, through the
# socket; the statement goes on stdin, never on a command line.
set_pg_password() {
  printf "SET password_encryption = 'scram-sha-256'; ALTER ROLE postgres PASSWORD '%s';\n" \
    "$(secret_of "$PROFILE" pg.secret)" | pg_socket_psql >/dev/null ||
    die_with_log "$PG_LOG" "could not set the PostgreSQL password"
}

init_pg() {
  local locale=(--locale=C.UTF-8)
  if ! locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
    log "locale C.UTF-8 is not installed; initializing with --no-locale"
    locale=(--no-locale)
  fi
  log "initializing PostgreSQL cluster in $PG_DATA"
  as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 "${locale[@]}" --no-instructions >&2
}

# bind_refused LOG FROM_LINE: whether the log, after line FROM_LINE, says the
# server could not listen because its address was in use.
bind_refused() { tail -n "+$(($2 + 1))" "$1" 2>/dev/null | grep -q 'Address already in use'; }

lines_in() { { wc -l <"$1"; } 2>/dev/null || echo 0; }

start_pg() {
  # A chaos scenario that failed with PostgreSQL frozen leaves it so: wake it first.
  thaw_pg || true
  if pg_running; then
    # The port it runs on, whatever was recorded (postmaster.pid's line 4).
    PG_PORT=$(as_pg sed -n 4p "$PG_DATA/postmaster.pid")
    log "PostgreSQL ($PROFILE) already running on 127.0.0.1:$PG_PORT"
    # Started by an older checkout, it may still trust every local user: switch it over now.
    write_pg_hba
    as_pg "$PG_BIN/pg_ctl" reload -D "$PG_DATA" >&2
  else
    prepare_pg_files
    [[ -f $PG_DATA/PG_VERSION ]] || init_pg
    write_pg_hba
    local attempt mark
    for attempt in 1 2 3 4 5; do
      move_if_unusable PostgreSQL PG_PORT
      log "starting PostgreSQL ($PROFILE) on 127.0.0.1:$PG_PORT"
      mark=$(lines_in "$PG_LOG")
      # Settings go on the command line rather than into postgresql.conf, so
      # an existing cluster picks up changes to this script on its next start.
      as_pg "$PG_BIN/pg_ctl" start -D "$PG_DATA" -l "$PG_LOG" -w -t 30 -o "-p $PG_PORT \
        -c listen_addresses=127.0.0.1 -c unix_socket_directories='$PG_DATA' \
        -c max_connections=400 -c shared_buffers=128MB \
        -c shared_preload_libraries=pg_stat_statements" >&2 && break
      # Taken between the check and the bind (a client socket can take it):
      # `up` tries another port; a fault-restart must not move.
      if ! { ((MAY_MOVE && attempt < 5)) && bind_refused "$PG_LOG" "$mark"; }; then
        die_with_log "$PG_LOG" "PostgreSQL did not start"
      fi
      log "127.0.0.1:$PG_PORT was taken before PostgreSQL could listen on it"
      PG_PORT=$(free_port) || exit 1
    done
  fi
  record_ports
  # Also covers a server that is running but still recovering.
  wait_for 30 pg_ready || die_with_log "$PG_LOG" "PostgreSQL is not accepting connections"
  set_pg_password
  [[ $(pg_psql -c "select 1 from pg_database where datname = 'ridelock'") == 1 ]] ||
    pg_psql -c 'create database ridelock' >&2
}

stop_pg() {
  if pg_running; then
    log "stopping PostgreSQL ($PROFILE)"
    as_pg "$PG_BIN/pg_ctl" stop -D "$PG_DATA" -m fast -w >&2
  else
    log "PostgreSQL ($PROFILE) not running"
  fi
}

