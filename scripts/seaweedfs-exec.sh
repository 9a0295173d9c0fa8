#!/usr/bin/env bash
# Runs CMD where the cluster of scripts/seaweedfs-up.sh DIR can be reached (inside its namespace).
#   scripts/seaweedfs-exec.sh DIR CMD...
set -euo pipefail
DIR=${1:?usage: seaweedfs-exec.sh DIR CMD...}; shift
source "$DIR/env.sh"
if [[ $SW_NETNS == none ]]; then exec "$@"; fi
exec ip netns exec "$SW_NETNS" "$@"
