#!/usr/bin/env bash
# Produce throughput of a schema-aware topic (payload validation; on SeaweedMQ, typed records)
# against a topic without a schema, same workload, same run: scripts/bench_schema_topics.py
# against kelp on SeaweedMQ and on the memory store. Prints one JSON line per store, with the CPU
# time kelp and the SeaweedFS server spent per record in each phase.
#
#   scripts/bench-schema-topics.sh [COUNT] [ROUNDS]       (defaults 200000, 3)
#
# Needs root (the SeaweedFS cluster runs in a network namespace of its own), `weed`, the clients
# (scripts/install-clients.sh) and kelp built with --release (KELP_BIN, default
# target/release/kelp). Knobs: BASE (port base, default 24800).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT=${1:-200000}
ROUNDS=${2:-3}
BASE=${BASE:-24800}
KELP_BIN=${KELP_BIN:-$here/target/release/kelp}
[[ -x $KELP_BIN ]] || { echo "no kelp binary at $KELP_BIN (cargo build --release -p kelp)" >&2; exit 3; }
PY=${PY:-$HOME/.cache/kelp-clients/venv-confluent/bin/python}
[[ -x $PY ]] || { echo "no confluent-kafka venv at $PY (scripts/install-clients.sh)" >&2; exit 3; }
bench="$here/scripts/bench_schema_topics.py"

dir=$(mktemp -d /tmp/kelp-bench-st.XXXXXX)
ns=kelpbst$BASE
kelp_pid=
stop_kelp() { # and make sure it is gone: the next one listens on the same ports
  if [[ -n $kelp_pid ]]; then
    kill "$kelp_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      [[ -d /proc/$kelp_pid ]] || break
      sleep 0.1
    done
    kill -KILL "$kelp_pid" 2>/dev/null || true
    kelp_pid=
  fi
}
cleanup() {
  stop_kelp
  STOP_TIMEOUT=0 "$here/scripts/seaweedfs-down.sh" "$dir" --wipe > /dev/null 2>&1 || true
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
NETNS=$ns "$here/scripts/seaweedfs-up.sh" "$dir" "$BASE" > /dev/null
inns() { ip netns exec "$ns" "$@"; }
wait_port() {
  for _ in $(seq 1 120); do
    inns bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null && return 0
    sleep 0.25
  done
  echo "nothing listens on $1" >&2
  return 1
}
# STORE ARGS...: kelp on that store, the workload, kelp stopped.
one() {
  local store=$1
  shift
  # Not through inns: a function run in the background is a subshell, and $! would be its pid.
  ip netns exec "$ns" "$KELP_BIN" serve "$@" --listen 127.0.0.1:$((BASE + 93)) \
    --schema-registry-listen 127.0.0.1:$((BASE + 81)) --admin-listen off > "$dir/kelp-$store.log" 2>&1 &
  kelp_pid=$!
  wait_port $((BASE + 93))
  wait_port $((BASE + 81))
  local weed_pid
  weed_pid=$(awk '$1 == "server" {print $2}' "$dir/pids")
  printf '{"store": "%s", "result": ' "$store"
  BENCH_PIDS="kelp=$kelp_pid,weed=$weed_pid" inns "$PY" "$bench" 127.0.0.1:$((BASE + 93)) http://127.0.0.1:$((BASE + 81)) "b$store" "$COUNT" "$ROUNDS"
  printf '}\n'
  stop_kelp
}
one seaweedmq --storage seaweedmq --seaweedmq-master 127.0.0.1:$((BASE + 10)).$((BASE + 11)) \
  --seaweedmq-namespace bench | tr -d '\n'
echo
one memory --storage memory | tr -d '\n'
echo
