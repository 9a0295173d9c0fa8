#!/usr/bin/env bash
# Runs cargo test inside a fresh network namespace that has only loopback, where the SeaweedFS
# tests may start clusters (weed's broker listens on every interface; here that is loopback).
#   scripts/seaweedfs-test.sh [cargo test args...]     e.g. -p kelp-tests --test e2e_seaweedmq
# With E2E=1 it instead starts one cluster and runs the end-to-end client suites against
# `kelp serve --storage seaweedmq` (KELP_RUNTIME picks the runtime, as for the other stores).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ns="kelptest$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" ip link set lo up
if [[ ${E2E:-0} == 1 ]]; then
  dir=$(mktemp -d /tmp/kelp-sw-e2e.XXXXXX)
  ip netns exec "$ns" bash -c '
    set -euo pipefail
    here=$1 dir=$2; shift 2
    trap "\"$here/scripts/seaweedfs-down.sh\" \"$dir\" --wipe > /dev/null" EXIT
    NETNS=none "$here/scripts/seaweedfs-up.sh" "$dir" 21000
    export KELP_E2E_STORAGE=seaweedmq KELP_SEAWEEDMQ_MASTER=127.0.0.1:21010.21011
    cd "$here" && cargo test "$@"' _ "$here" "$dir" "$@"
else
  cd "$here" && ip netns exec "$ns" cargo test "$@"
fi
