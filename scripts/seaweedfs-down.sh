#!/usr/bin/env bash
# Stops what scripts/seaweedfs-up.sh DIR started, by the pids it recorded: TERM in reverse order,
# KILL whatever is left after STOP_TIMEOUT seconds (default 30; the filer alone takes ~15 s to stop
# gracefully). Removes the network namespace if up.sh created it. --wipe also deletes DIR.
#   scripts/seaweedfs-down.sh DIR [--wipe]
set -uo pipefail
DIR=${1:?usage: seaweedfs-down.sh DIR [--wipe]}
[[ -f $DIR/pids ]] || { echo "nothing recorded in $DIR/pids" >&2; exit 1; }
mapfile -t procs < <(tac "$DIR/pids")
for p in "${procs[@]}"; do
  read -r name pid <<< "$p"
  kill -0 "$pid" 2>/dev/null && kill -TERM "$pid"
done
end=$(( SECONDS + ${STOP_TIMEOUT:-30} ))
for p in "${procs[@]}"; do
  read -r name pid <<< "$p"
  while kill -0 "$pid" 2>/dev/null && (( SECONDS < end )); do sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && { kill -KILL "$pid"; echo "killed $name ($pid)"; }
done
: > "$DIR/pids"
# weed leaves unix sockets named after its gRPC ports in /tmp when it is killed
if [[ -f $DIR/env.sh ]]; then
  ( source "$DIR/env.sh"
    for pair in "${SW_MASTER##*.}:master" "${SW_FILER##*.}:filer"; do
      rm -f "/tmp/seaweedfs-${pair#*:}-grpc-${pair%%:*}.sock"
    done )
fi
if [[ -f $DIR/netns.ours ]]; then
  ip netns del "$(cat "$DIR/netns.ours")" 2>/dev/null
  rm -f "$DIR/netns.ours"
fi
[[ ${2:-} == --wipe ]] && rm -rf "$DIR"
exit 0
