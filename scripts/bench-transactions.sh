#!/usr/bin/env bash
# What transactions cost a producer, in one run on one machine: the Java producer
# (kafka-clients 4.3, tests/e2e/clients/TransactionsJava.java `bench`) sends the same records
# without transactions (an idempotent producer), in transactions of 10,000 records and in
# transactions of 100 records, to kelp on the disk store (--fsync always) and on the memory
# store; records per second from the first send to the last commit (or ack), and the ratio of
# each transactional row to the non-transactional one of the same store.
#
#   scripts/bench-transactions.sh
#
# kelp (release) runs on the SUT core (KELP_BENCH_SUT_CPU, default 1), the client on the load
# core (KELP_BENCH_LOAD_CPU, default 0), as in scripts/bench.sh. Each row runs REPEATS times on a
# fresh topic (3 partitions); the median is reported.
#
# Settings (environment): KELP_BENCH_TXN_RECORDS (200000), _SIZE (record bytes, 100), _REPEATS
# (3). KELP_BENCH_BIN=path uses that kelp binary instead of building a release one.
# Output: a results directory (KELP_BENCH_OUT, default
# $HOME/.cache/kelp-bench-results/<time>-transactions) with summary.txt, results.tsv,
# machine.txt and every command's log. Everything started here is stopped by pid on exit,
# failure included; the data directory is removed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kelp-target}"
SUT_CPU="${KELP_BENCH_SUT_CPU:-1}"
LOAD_CPU="${KELP_BENCH_LOAD_CPU:-0}"
PORT="${KELP_BENCH_PORT:-19292}"
RECORDS="${KELP_BENCH_TXN_RECORDS:-200000}"
SIZE="${KELP_BENCH_TXN_SIZE:-100}"
REPEATS="${KELP_BENCH_TXN_REPEATS:-3}"
CLIENTS="${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}"
OUT="${KELP_BENCH_OUT:-$HOME/.cache/kelp-bench-results/$(date -u +%Y%m%dT%H%M%SZ)-transactions}"
mkdir -p "$OUT"

if [ -n "${KELP_BENCH_BIN:-}" ]; then
    KELP="$KELP_BENCH_BIN"
else
    cargo build -q --release -p kelp
    KELP="$CARGO_TARGET_DIR/release/kelp"
fi
[ -x "$KELP" ] || { echo "no kelp binary at $KELP" >&2; exit 1; }
[ -f "$CLIENTS/java/kafka-clients-4.3.0.jar" ] || { echo "run scripts/install-clients.sh first" >&2; exit 1; }

DATA="$(mktemp -d)"
kelp_pid=""
stop_kelp() {
    if [ -n "$kelp_pid" ]; then
        kill "$kelp_pid" 2>/dev/null || true
        wait "$kelp_pid" 2>/dev/null || true
        kelp_pid=""
    fi
}
cleanup() {
    stop_kelp
    rm -rf "$DATA"
}
trap cleanup EXIT

java_txn() {
    taskset -c "$LOAD_CPU" java -cp "$CLIENTS/java/*" tests/e2e/clients/TransactionsJava.java "$@"
}

start_kelp() { # store, log
    local store="$1" log="$2"
    rm -rf "$DATA/kelp"
    taskset -c "$SUT_CPU" "$KELP" serve --listen "127.0.0.1:$PORT" --storage "$store" --data-dir "$DATA/kelp" \
        --fsync always --admin-listen off --schema-registry-listen off >"$log" 2>&1 &
    kelp_pid=$!
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "kelp did not start; its log:" >&2
    cat "$log" >&2
    exit 1
}

{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: kelp on CPU $SUT_CPU, the Java producer on CPU $LOAD_CPU"
    echo "kelp: $("$KELP" --version 2>/dev/null || echo "$KELP")"
    echo "client: kafka-clients 4.3.0 (Java $(java -version 2>&1 | head -1 | cut -d'"' -f2))"
    echo "records: $RECORDS of $SIZE bytes, 3 partitions, median of $REPEATS runs"
} >"$OUT/machine.txt"

printf 'store\tcommit_every\trun\trecords_per_s\n' >"$OUT/results.tsv"
n=0
for store in disk memory; do
    start_kelp "$store" "$OUT/kelp-$store.log"
    for commit in 0 10000 100; do
        for run in $(seq "$REPEATS"); do
            n=$((n + 1))
            topic="bench-txn-$n"
            python3 - "$PORT" "$topic" <<'EOF'
import socket, struct, sys
port, topic = int(sys.argv[1]), sys.argv[2]
def s(x): return struct.pack(">h", len(x)) + x.encode()
body = struct.pack(">hhi", 19, 2, 7) + s("bench") + struct.pack(">i", 1) + s(topic) + struct.pack(">ihii", 3, 1, 0, 0) + struct.pack(">i", 30000) + b"\0"
c = socket.create_connection(("127.0.0.1", port))
c.sendall(struct.pack(">i", len(body)) + body)
size = struct.unpack(">i", c.recv(4))[0]
resp = b""
while len(resp) < size:
    resp += c.recv(size - len(resp))
EOF
            line="$(java_txn bench "bootstrap=127.0.0.1:$PORT" "topic=$topic" "count=$RECORDS" "size=$SIZE" \
                "commit=$commit" "txn=bench-$n" 2>>"$OUT/client.log" | grep '"bench"')"
            rate="$(sed -E 's/.*"records_per_s":([0-9]+).*/\1/' <<<"$line")"
            printf '%s\t%s\t%s\t%s\n' "$store" "$commit" "$run" "$rate" >>"$OUT/results.tsv"
            echo "$store commit=$commit run $run: $rate records/s"
        done
    done
    stop_kelp
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

python3 - "$OUT/results.tsv" >"$OUT/summary.txt" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
med = {}
for store, commit, _, rate in rows:
    med.setdefault((store, int(commit)), []).append(int(rate))
print("| store | producer | records/s (median) | vs no transactions |")
print("|---|---|---|---|")
for store in ("disk", "memory"):
    base = statistics.median(med[(store, 0)])
    for commit in (0, 10000, 100):
        rate = statistics.median(med[(store, commit)])
        what = "idempotent, no transactions" if commit == 0 else f"transactions of {commit:,} records"
        print(f"| {store} | {what} | {rate:,.0f} | {rate / base:.2f} |")
EOF
cat "$OUT/machine.txt" "$OUT/summary.txt"
echo "results in $OUT"
