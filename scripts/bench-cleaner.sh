#!/usr/bin/env bash
# What kelp's log cleaner costs (issue 18), on the disk store, in one run on one machine:
#
#   (a) cleaner throughput: MB of log cleaned (kelp_cleaner_bytes_read_total of /metrics) per
#       second of wall time with one cleaner thread (a poller reads /metrics every 0.2 s: from
#       the cleaner's first look to the end of its last pass), per CPU second of the cleaner
#       thread (/proc/<pid>/task/*/comm containing "clean") and of kelp as a whole, and divided
#       by kelp_cleaner_run_seconds_total;
#   (b) the produce p99 of the lean latency client (benches/src/bin/latency_probe.rs) to a topic
#       of its own, with the cleaner at work on a large compacted topic, against the same with the
#       cleaner off: the ratio.
#
#   scripts/bench-cleaner.sh
#
# Steps. kelp (release) runs on the SUT core (KELP_BENCH_SUT_CPU, default 1), clients on the load
# core (KELP_BENCH_LOAD_CPU, default 0), as in scripts/bench.sh. "Off" is
# --log-cleaner-backoff-ms 3600000 (the first check an hour away), "on" is 500 ms.
#   1. kelp off: create bench-compact (PARTITIONS partitions, cleanup.policy=compact,
#      segment.bytes SEGMENT_BYTES) and bench-lean-cleaner (1 partition, delete); fill
#      bench-compact with RECORDS records over KEYS keys (scripts/bench_cleaner.py,
#      confluent-kafka). Stop, sync.
#   2. kelp off: the lean client for WARMUP + SECONDS at RATE records/s -> p99 without cleaner.
#   3. kelp on: the same client at once, while the cleaner works -> p99 with the cleaner. A poller
#      reads /metrics every 0.5 s, so the run says how long the cleaner was busy; the cleaner
#      then runs to the end (throughput with the client, reported, not the headline).
#   4. kelp off: fill bench-compact again (dirty again). Stop, sync.
#   5. kelp on, nothing else running: the cleaner cleans the whole log -> (a).
# Each start is a restart over the same data directory (the recovery is not measured).
#
# Settings (environment): KELP_BENCH_CLEANER_RECORDS (4000000: 4 GB, so that the cleaner is
# still at work when the lean client ends), _KEYS (100000), _VALUE_BYTES
# (1000), _PARTITIONS (8), _SEGMENT_BYTES (16777216), _RATE (lean client records/s, 100000),
# _ACKS (1), _SECONDS (10), _WARMUP (2), _THREADS (--log-cleaner-threads; kelp's default, 1, when
# unset), _IO_RATE (--log-cleaner-io-max-bytes-per-second in steps 3 and 5; unset: no limit).
# KELP_BENCH_BIN=path uses that kelp binary instead of building a release one.
# Output: a results directory (KELP_BENCH_OUT, default
# $HOME/.cache/kelp-bench-results/<time>-cleaner) with summary.txt (the figures), results.tsv,
# machine.txt, the metrics timelines and every command's log. Everything started here is
# stopped by pid on exit, failure included; the data directory is removed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kelp-target}"
SUT_CPU="${KELP_BENCH_SUT_CPU:-1}"
LOAD_CPU="${KELP_BENCH_LOAD_CPU:-0}"
PORT="${KELP_BENCH_PORT:-19192}"
ADMIN_PORT="${KELP_BENCH_ADMIN_PORT:-$((PORT + 1))}"
RECORDS="${KELP_BENCH_CLEANER_RECORDS:-4000000}"
KEYS="${KELP_BENCH_CLEANER_KEYS:-100000}"
VALUE_BYTES="${KELP_BENCH_CLEANER_VALUE_BYTES:-1000}"
PARTITIONS="${KELP_BENCH_CLEANER_PARTITIONS:-8}"
SEGMENT_BYTES="${KELP_BENCH_CLEANER_SEGMENT_BYTES:-16777216}"
RATE="${KELP_BENCH_CLEANER_RATE:-100000}"
ACKS="${KELP_BENCH_CLEANER_ACKS:-1}"
SECONDS_="${KELP_BENCH_CLEANER_SECONDS:-10}"
WARMUP="${KELP_BENCH_CLEANER_WARMUP:-2}"
THREADS="${KELP_BENCH_CLEANER_THREADS:-}"
IO_RATE="${KELP_BENCH_CLEANER_IO_RATE:-}"
case "${1:-}" in
    -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
    "") ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac

OUT="${KELP_BENCH_OUT:-$HOME/.cache/kelp-bench-results/$(date -u +%Y%m%dT%H%M%SZ)-cleaner}"
mkdir -p "$OUT"
if [ "$(nproc 2>/dev/null || echo 1)" -lt 2 ]; then SUT_CPU=0; LOAD_CPU=0; fi
pin_sut=(taskset -c "$SUT_CPU")
pin_load=(taskset -c "$LOAD_CPU")
log() { printf '%s\n' "$*" | tee -a "$OUT/bench.log" >&2; }

DATA="$(mktemp -d "${TMPDIR:-/tmp}/kelp-bench-cleaner.XXXXXX")"
KELP_PID=""
POLL_PID=""
cleanup() {
    if [ -n "$POLL_PID" ]; then kill "$POLL_PID" 2>/dev/null || true; fi
    if [ -n "$KELP_PID" ]; then kill "$KELP_PID" 2>/dev/null || true; wait "$KELP_PID" 2>/dev/null || true; fi
    rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- tools -----------------------------------------------------------------------------------
PY="${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}/venv-confluent/bin/python"
if ! { [ -x "$PY" ] && "$PY" -c 'import confluent_kafka' 2>/dev/null; }; then
    PY="${KELP_BENCH_TOOLS:-$HOME/.cache/kelp-bench-tools}/venv/bin/python"
    if ! { [ -x "$PY" ] && "$PY" -c 'import confluent_kafka' 2>/dev/null; }; then
        log "installing confluent-kafka into $(dirname "$(dirname "$PY")")"
        python3 -m venv "$(dirname "$(dirname "$PY")")"
        "$(dirname "$PY")/pip" install -q confluent-kafka
    fi
fi
KELP_BIN="${KELP_BENCH_BIN:-}"
if [ -z "$KELP_BIN" ]; then
    log "building kelp and the lean latency client (release)"
    cargo build -q --release -p kelp -p kelp-benches --bin kelp --bin latency_probe
    KELP_BIN="$CARGO_TARGET_DIR/release/kelp"
else
    cargo build -q --release -p kelp-benches --bin latency_probe
fi
LEAN="$CARGO_TARGET_DIR/release/latency_probe"
ADDR="127.0.0.1:$PORT"
METRICS="http://127.0.0.1:$ADMIN_PORT/metrics"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kelp: $("$KELP_BIN" --version) ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), --storage disk --fsync interval${THREADS:+ --log-cleaner-threads $THREADS}${IO_RATE:+ --log-cleaner-io-max-bytes-per-second $IO_RATE}"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; kelp on core $SUT_CPU, clients on core $LOAD_CPU"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "log: $RECORDS records of $VALUE_BYTES B over $KEYS keys, $PARTITIONS partitions, segment.bytes $SEGMENT_BYTES"
    echo "lean client: $RATE records/s of 100 B, acks $ACKS, ${WARMUP}s warm-up + ${SECONDS_}s"
} >"$OUT/machine.txt"

# ---- kelp -------------------------------------------------------------------------------------
start_kelp() { # off|on
    local backoff=3600000 limit=()
    if [ "$1" = on ]; then
        backoff=500
        if [ -n "$IO_RATE" ]; then limit=(--log-cleaner-io-max-bytes-per-second "$IO_RATE"); fi
    fi
    KELP_SCHEMA_REGISTRY_LISTEN=off RUST_LOG="${RUST_LOG:-warn}" "${pin_sut[@]}" "$KELP_BIN" serve --listen "$ADDR" --advertised-listener "$ADDR" \
        --admin-listen "127.0.0.1:$ADMIN_PORT" --storage disk --data-dir "$DATA" --fsync interval \
        --log-cleaner-backoff-ms "$backoff" ${THREADS:+--log-cleaner-threads "$THREADS"} "${limit[@]}" >>"$OUT/kelp.log" 2>&1 &
    KELP_PID=$!
    for _ in $(seq 1 600); do
        bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null && return 0
        kill -0 "$KELP_PID" 2>/dev/null || { echo "kelp exited at start (see $OUT/kelp.log)" >&2; exit 1; }
        sleep 0.1
    done
    echo "kelp did not listen on $PORT within 60 s" >&2
    exit 1
}
stop_kelp() {
    kill "$KELP_PID"
    wait "$KELP_PID" || true
    KELP_PID=""
    sync
}
metric() { # NAME: the sum of every sample of NAME in /metrics (0 when absent)
    curl -fsS --max-time 5 "$METRICS" | awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%.6f\n", s + 0}'
}
# The CPU ticks of kelp's threads whose name says "clean" (empty when none does).
cleaner_ticks() {
    local t f found=""
    local sum=0
    for t in /proc/"$KELP_PID"/task/*; do
        grep -qi clean "$t/comm" 2>/dev/null || continue
        f="$(cat "$t/stat" 2>/dev/null)" || continue
        f="${f##*) }"
        # shellcheck disable=SC2086
        set -- $f
        sum=$((sum + ${12} + ${13}))
        found=1
    done
    if [ -n "$found" ]; then echo "$sum"; fi
}
# utime + stime of all of kelp's threads, in clock ticks.
kelp_ticks() {
    local f
    f="$(cat "/proc/$KELP_PID/stat")"
    f="${f##*) }"
    # shellcheck disable=SC2086
    set -- $f
    echo $((${12} + ${13}))
}
# Samples the cleaner's counters every 0.2 s: seconds since START, bytes read, passes.
poll_metrics() { # FILE START_EPOCH_NS
    while :; do
        local now
        now=$(date +%s%N)
        printf '%s\t%s\t%s\n' "$(((now - $2) / 1000000))" "$(metric kelp_cleaner_bytes_read_total)" \
            "$(metric kelp_cleaner_passes_total)" >>"$1"
        sleep 0.2
    done
}
# Waits until every partition of bench-compact has had a pass (each is dirty when kelp starts)
# and the cleaner has read nothing new for 5 s (10 backoffs), at most 30 minutes.
wait_cleaner_idle() {
    local last=-1 same=0 now
    for _ in $(seq 1 3600); do
        now="$(metric kelp_cleaner_bytes_read_total)"
        if [ "$now" = "$last" ] && [ "$(metric kelp_cleaner_passes_total | cut -d. -f1)" -ge "$PARTITIONS" ]; then
            same=$((same + 1))
            [ "$same" -ge 10 ] && return 0
        else
            same=0
        fi
        last="$now"
        sleep 0.5
    done
    echo "the cleaner did not go idle within 30 minutes" >&2
    exit 1
}
fill() { # LOGNAME
    log "filling bench-compact: $RECORDS records of $VALUE_BYTES B over $KEYS keys"
    "${pin_load[@]}" "$PY" "$here/scripts/bench_cleaner.py" "$ADDR" fill bench-compact "$PARTITIONS" "$RECORDS" "$KEYS" \
        "$VALUE_BYTES" | tee "$OUT/$1.out" >&2
}
probe() { # LOGNAME: the lean client's output line
    local cmd=("${pin_load[@]}" "$LEAN" "$ADDR" bench-lean-cleaner "$RATE" "$((WARMUP + SECONDS_))" "$ACKS" "$WARMUP")
    local text="${cmd[*]}"
    echo "${text//$CARGO_TARGET_DIR/\$CARGO_TARGET_DIR}" >"$OUT/$1.cmd"
    "${cmd[@]}" >"$OUT/$1.out" 2>&1 || { echo "the lean client failed (see $OUT/$1.out)" >&2; exit 1; }
    grep '^requested=' "$OUT/$1.out" | tail -n 1
}
field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }
du_mb() { du -sm "$DATA" | cut -f1; }

# ---- 1. fill, cleaner off ---------------------------------------------------------------------
start_kelp off
"$PY" "$here/scripts/bench_cleaner.py" "$ADDR" create bench-compact "$PARTITIONS" cleanup.policy=compact \
    "segment.bytes=$SEGMENT_BYTES"
"$PY" "$here/scripts/bench_cleaner.py" "$ADDR" create bench-lean-cleaner 1
fill fill-1
stop_kelp
log "data directory after the fill: $(du_mb) MB"

# ---- 2. the lean client, cleaner off ----------------------------------------------------------
start_kelp off
log "lean client, cleaner off"
OFF="$(probe probe-off)"
log "  $OFF"
stop_kelp

# ---- 3. the lean client while the cleaner works ------------------------------------------------
start_kelp on
T0=$(date +%s%N)
poll_metrics "$OUT/timeline-with-probe.tsv" "$T0" &
POLL_PID=$!
log "lean client, cleaner on"
ON="$(probe probe-on)"
PROBE_END_MS=$((($(date +%s%N) - T0) / 1000000))
log "  $ON"
wait_cleaner_idle
kill "$POLL_PID"; POLL_PID=""
# When the cleaner last finished a pass with reads: it was at work until then.
BUSY_UNTIL_MS="$(awk -F'\t' 'NR > 1 && $2 != prev {t = $1} {prev = $2} END {print t + 0}' "$OUT/timeline-with-probe.tsv")"
READ_P="$(metric kelp_cleaner_bytes_read_total)"
stop_kelp
log "data directory after cleaning: $(du_mb) MB"

# ---- 4, 5. dirty again, then the cleaner alone --------------------------------------------------
start_kelp off
fill fill-2
stop_kelp
BEFORE_MB="$(du_mb)"
start_kelp on
T0=$(date +%s%N)
poll_metrics "$OUT/timeline-alone.tsv" "$T0" &
POLL_PID=$!
log "the cleaner alone"
KELP_TICKS_0="$(kelp_ticks)"
wait_cleaner_idle
kill "$POLL_PID"; POLL_PID=""
READ="$(metric kelp_cleaner_bytes_read_total)"; WRITTEN="$(metric kelp_cleaner_bytes_written_total)"
RUN="$(metric kelp_cleaner_run_seconds_total)"; PASSES="$(metric kelp_cleaner_passes_total)"
REMOVED="$(metric kelp_cleaner_records_removed_total)"
TICKS="$(cleaner_ticks)"
KELP_TICKS=$(($(kelp_ticks) - KELP_TICKS_0))
# The cleaner's wall time: from its first look (one backoff, 0.5 s, after the start) to the
# end of the last pass that read anything.
ALONE_BUSY_MS="$(awk -F'\t' 'NR > 1 && $2 != prev {t = $1} {prev = $2} END {print t + 0}' "$OUT/timeline-alone.tsv")"
curl -fsS --max-time 5 "$METRICS" | grep '^kelp_cleaner' >"$OUT/metrics-alone.txt" || true
stop_kelp
AFTER_MB="$(du_mb)"

# ---- figures ------------------------------------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"
python3 - "$OUT" "$OFF" "$ON" "$READ" "$WRITTEN" "$RUN" "$PASSES" "$REMOVED" "${TICKS:-}" "$CLK_TCK" \
    "$READ_P" "$BUSY_UNTIL_MS" "$PROBE_END_MS" "$BEFORE_MB" "$AFTER_MB" "$KELP_TICKS" "$ALONE_BUSY_MS" <<'EOF' | tee "$OUT/summary.txt"
import sys
(out, off, on, read, written, run, passes, removed, ticks, tck, read_p, busy, probe_end, before, after, kelp_ticks,
 alone_busy) = sys.argv[1:]
f = lambda line, k: line.split(k + "=")[1].split()[0]
read, written, run, read_p = map(float, (read, written, run, read_p))
tck = int(tck)
wall = int(alone_busy) / 1000 - 0.5
p99_off, p99_on = float(f(off, "p99_us")), float(f(on, "p99_us"))
rows = [
    ("cleaner throughput (alone), MB of log cleaned per second of wall time", f"{read / 1e6 / wall:.0f}"),
    ("cleaner throughput (alone), MB per CPU second of the cleaner thread",
     f"{read / 1e6 / (int(ticks) / tck):.0f}" if ticks else "- (no thread named *clean*)"),
    ("cleaner throughput (alone), MB per CPU second of kelp (all threads)", f"{read / 1e6 / (int(kelp_ticks) / tck):.0f}"),
    ("cleaner throughput (alone), kelp_cleaner_bytes_read_total / kelp_cleaner_run_seconds_total", f"{read / 1e6 / run:.0f}"),
    ("cleaned (alone): MB read / MB written / passes / records removed / wall s",
     f"{read / 1e6:.0f} / {written / 1e6:.0f} / {passes.split('.')[0]} / {removed.split('.')[0]} / {wall:.1f}"),
    ("data directory before / after cleaning (alone), MB", f"{before} / {after}"),
    ("lean client p50 / p99 / p99.9 / max us, cleaner off", f"{f(off, 'p50_us')} / {f(off, 'p99_us')} / {f(off, 'p999_us')} / {f(off, 'max_us')}"),
    ("lean client p50 / p99 / p99.9 / max us, cleaner on", f"{f(on, 'p50_us')} / {f(on, 'p99_us')} / {f(on, 'p999_us')} / {f(on, 'max_us')}"),
    ("lean client achieved records/s, off / on", f"{f(off, 'achieved')} / {f(on, 'achieved')}"),
    ("p99 with the cleaner / without", f"{p99_on / p99_off:.2f}"),
    ("MB cleaned while the lean client ran; the cleaner was busy until / the lean client ended, s after the start",
     f"{read_p / 1e6:.0f}; {int(busy) / 1000:.1f} / {int(probe_end) / 1000:.1f}"),
]
with open(f"{out}/results.tsv", "w") as t:
    for k, v in rows:
        t.write(f"{k}\t{v}\n")
for k, v in rows:
    print(f"{k}: {v}")
EOF
log "results in $OUT"
