#!/usr/bin/env bash
# `make cluster`: three ridelock nodes behind nginx, on the dev PostgreSQL and Redis
# (scripts/services.sh up dev), in the foreground.
#
# REDIS=sentinel (make cluster REDIS=sentinel) runs them on the sentinel profile instead (a
# primary, two replicas, three Sentinels), REDIS=cluster on the rcluster profile (a six-node
# Redis Cluster): its env file sets RIDELOCK_REDIS__MODE, RIDELOCK_REDIS__NODES and
# RIDELOCK_REDIS__SERVICE_NAME, which the nodes inherit. The server has to support
# redis.mode for that: one that does not uses REDIS_URL alone (the primary; one node of the
# cluster, which answers MOVED for most keys).
#
#   http://127.0.0.1:3000   nginx, round-robin (config/nginx-cluster.conf)
#   n1 :3001  n2 :3002  n3 :3003   logs in var/cluster/n1.log …
#
# Ctrl-C (or SIGTERM) stops nginx, then each node with SIGTERM: a node drains its in-flight
# requests, gives back every lease and leaves the member list, so nothing waits for a TTL.
# Installs nginx (Debian package) when it is missing (scripts/install-nginx.sh). `make run`
# uses :3000 too: one or the other.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# This script runs the development profile; the binary applies production rules otherwise.
export RIDELOCK_ENV=local
NGINX=/usr/sbin/nginx
NODES=(n1 n2 n3)
PORTS=(3001 3002 3003)
LB_PORT=3000
RUN=var/cluster

log() { echo "cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_listening PORT PID WHAT LOG SECONDS: until PORT answers; fail if PID exits or time runs out.
wait_listening() {
  local deadline=$((SECONDS + $5))
  until port_in_use "$1"; do
    kill -0 "$2" 2>/dev/null || die "$3 exited; see $4"
    ((SECONDS < deadline)) || die "$3 did not start; see $4"
    sleep 0.2
  done
}

case ${REDIS:-} in
  "" | single) PROFILE=dev ;;
  sentinel) PROFILE=sentinel ;;
  cluster) PROFILE=rcluster ;;
  *) die "REDIS=$REDIS: expected sentinel or cluster (or nothing: dev's single Redis)" ;;
esac

for port in "$LB_PORT" "${PORTS[@]}"; do
  port_in_use "$port" && die "127.0.0.1:$port is in use (a \`make run\` server?); stop it first"
done

bash scripts/services.sh up "$PROFILE" >/dev/null
# The profile's env file alone says which Redis the nodes use (not what a shell kept from
# another profile's).
unset RIDELOCK_REDIS__MODE RIDELOCK_REDIS__NODES RIDELOCK_REDIS__SERVICE_NAME
# shellcheck disable=SC1090
. "var/$PROFILE/env"
bash scripts/install-nginx.sh
cargo build --release
./target/release/ridelock migrate
./target/release/ridelock seed

mkdir -p "$RUN/nginx/logs" "$RUN/nginx/tmp"
PIDS=()
NGINX_PID=
stop() {
  trap - EXIT INT TERM
  log "stopping"
  [[ -n $NGINX_PID ]] && kill -QUIT "$NGINX_PID" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}" $NGINX_PID; do wait "$pid" 2>/dev/null || true; done
  log "stopped"
}
trap stop EXIT
# Ctrl-C or SIGTERM is how this is meant to end: clean up, then exit 0.
trap 'stop; exit 0' INT TERM

export RUST_LOG="${RUST_LOG:-info}"
ulimit -n "$(ulimit -Hn)" || true
for i in "${!NODES[@]}"; do
  RIDELOCK_NODE__ID=${NODES[$i]} RIDELOCK_SERVER__PORT=${PORTS[$i]} \
    ./target/release/ridelock serve >"$RUN/${NODES[$i]}.log" 2>&1 &
  PIDS+=($!)
done
for i in "${!NODES[@]}"; do
  wait_listening "${PORTS[$i]}" "${PIDS[$i]}" "${NODES[$i]}" "$RUN/${NODES[$i]}.log" 30
done

"$NGINX" -p "$ROOT/$RUN/nginx/" -c "$ROOT/config/nginx-cluster.conf" \
  -e "$ROOT/$RUN/nginx/logs/error.log" -g 'daemon off;' &
NGINX_PID=$!
wait_listening "$LB_PORT" "$NGINX_PID" nginx "$RUN/nginx/logs/error.log" 10

REDIS_PORT=${REDIS_URL##*:}
REDIS_PORT=${REDIS_PORT%%/*}
CLI=redis-cli
[[ $PROFILE != rcluster ]] || CLI="redis-cli -c"
cat >&2 <<EOF
cluster: serving on http://127.0.0.1:$LB_PORT (nginx, round-robin over n1 :3001, n2 :3002, n3 :3003)
cluster: Redis:            ${RIDELOCK_REDIS__MODE:-single} (var/$PROFILE/env)
cluster: live nodes:       curl -s localhost:$LB_PORT/api/cluster/nodes
cluster: watch a lease:    REDISCLI_AUTH=\$(cat var/$PROFILE/redis.secret) $CLI -p $REDIS_PORT GET lock:booking:1
cluster: logs:             $RUN/n1.log $RUN/n2.log $RUN/n3.log
cluster: Ctrl-C stops everything
EOF
wait "$NGINX_PID"
