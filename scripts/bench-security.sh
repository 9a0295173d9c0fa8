#!/usr/bin/env bash
# What SASL_SSL costs against PLAINTEXT, in one run on one machine: one kelp (release, memory
# store, --runtime tokio) with two listeners, PLAINTEXT and SASL_SSL (TLS, then SCRAM-SHA-512),
# driven by librdkafka's rdkafka_performance built with OpenSSL. For 100 B and 1 KiB records:
# produce a fixed count to a fresh 3-partition topic, then consume it back with a consumer
# group; PLAINTEXT and SASL_SSL interleaved (the order alternates between repeats), each REPEATS
# times. Records/s and MB/s are rdkafka_performance's own summary; kelp's CPU per record is its
# utime + stime (/proc/<pid>/stat, every thread) over the run divided by the records; the load
# generator's CPU is its own rusage (/usr/bin/time). The summary gives medians and the
# SASL_SSL / PLAINTEXT ratios of each row (throughput and kelp CPU per record).
#
#   scripts/bench-security.sh            the measurement (about 2 minutes)
#   scripts/bench-security.sh --smoke    a few thousand records, one repeat: checks the script
#
# kelp runs on the SUT core (KELP_BENCH_SUT_CPU, default 1), rdkafka_performance on the load core
# (KELP_BENCH_LOAD_CPU, default 0), as in scripts/bench.sh. Producer settings are the same on both
# listeners: acks KELP_BENCH_SEC_ACKS (1), linger.ms=5, no compression.
#
# Settings (environment): KELP_BENCH_SEC_RECORDS_SMALL (records of 100 B, 1000000),
# KELP_BENCH_SEC_RECORDS_LARGE (records of 1 KiB, 250000), KELP_BENCH_SEC_REPEATS (3),
# KELP_BENCH_SEC_ACKS (1), KELP_BENCH_PORT (19392; the SASL_SSL listener is PORT+1).
# KELP_BENCH_BIN=path uses that kelp binary instead of building a release one.
#
# TLS: a throw-away CA and a server certificate for 127.0.0.1 and localhost (RSA 2048, made with
# the openssl CLI in a temporary directory, removed at exit); the SCRAM user `bench` gets a
# random password, set through the PLAINTEXT listener (`kelp user set`), and is never printed:
# the .cmd files show it as ***. Topics are created and deleted through the PLAINTEXT listener
# with confluent-kafka's AdminClient (the venv of scripts/install-clients.sh, else one of its own
# under $HOME/.cache/kelp-bench-tools).
#
# Tools: rdkafka_performance with SSL is built once from librdkafka's sources (the Rust crate
# rdkafka-sys unpacks them) into $HOME/.cache/kelp-bench-tools/bin/rdkafka_performance-ssl,
# linked against the system's OpenSSL; none of librdkafka is part of this repository.
#
# Output: a results directory (KELP_BENCH_OUT, default
# $HOME/.cache/kelp-bench-results/<time>-security) with summary.txt (the markdown table of
# docs/BENCHMARKS.md), results.tsv (one line per run), machine.txt, kelp.log and every command's
# output. Everything started here is stopped by pid on exit, failure included.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

MODE=full
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) MODE=smoke ;;
        -h|--help) sed -n '2,38p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kelp-target}"
TOOLS="${KELP_BENCH_TOOLS:-$HOME/.cache/kelp-bench-tools}"
SUT_CPU="${KELP_BENCH_SUT_CPU:-1}"
LOAD_CPU="${KELP_BENCH_LOAD_CPU:-0}"
PORT="${KELP_BENCH_PORT:-19392}"
SEC_PORT=$((PORT + 1))
ACKS="${KELP_BENCH_SEC_ACKS:-1}"
if [ "$MODE" = smoke ]; then
    N_SMALL=5000; N_LARGE=2000; REPEATS=1; CAP=60
else
    N_SMALL="${KELP_BENCH_SEC_RECORDS_SMALL:-1000000}"
    N_LARGE="${KELP_BENCH_SEC_RECORDS_LARGE:-250000}"
    REPEATS="${KELP_BENCH_SEC_REPEATS:-3}"
    CAP=180
fi
if [ "$(nproc)" -lt 2 ]; then SUT_CPU=0; LOAD_CPU=0; fi
OUT="${KELP_BENCH_OUT:-$HOME/.cache/kelp-bench-results/$(date -u +%Y%m%dT%H%M%SZ)-security}"
mkdir -p "$OUT"

KELP_PID=""
CERTS=""
cleanup() {
    if [ -n "$KELP_PID" ]; then
        kill "$KELP_PID" 2>/dev/null || true
        wait "$KELP_PID" 2>/dev/null || true
    fi
    [ -n "$CERTS" ] && rm -rf "$CERTS"
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM # exit, so that cleanup runs once and nothing new starts

log() { printf '%s\n' "$*" | tee -a "$OUT/bench.log" >&2; }

# ---- tools -----------------------------------------------------------------------------------
RDPERF="$TOOLS/bin/rdkafka_performance-ssl"
build_rdkafka_performance_ssl() {
    [ -x "$RDPERF" ] && return 0
    log "building rdkafka_performance with OpenSSL under $TOOLS (once)"
    local proj="$TOOLS/rdkafka-ssl-build"
    mkdir -p "$proj/src" "$TOOLS/bin"
    cat >"$proj/Cargo.toml" <<'EOF'
[package]
name = "kelp-bench-rdkafka-ssl"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
rdkafka = { version = "0.39", default-features = false, features = ["libz", "ssl"] }

[workspace]
EOF
    echo 'fn main() {}' >"$proj/src/main.rs"
    (cd "$proj" && CARGO_TARGET_DIR="$proj/target" cargo build --release -q)
    local src lib
    src="$(find "$proj/target/release/build" -path '*/out/*' -name rdkafka_performance.c | head -n 1)"
    [ -n "$src" ] || { echo "rdkafka-sys did not unpack librdkafka's examples" >&2; exit 1; }
    lib="$(cd "$(dirname "$src")/.." && pwd)"
    [ -f "$lib/src/librdkafka.a" ] || { echo "no librdkafka.a under $lib/src" >&2; exit 1; }
    grep -q '^#define WITH_SSL 1' "$lib/config.h" || { echo "librdkafka under $lib was built without SSL" >&2; exit 1; }
    gcc -O2 -I"$lib/src" "$src" "$lib/src/librdkafka.a" -lssl -lcrypto -lm -lz -ldl -lpthread -lrt -o "$RDPERF.tmp"
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

# admin create TOPIC PARTITIONS | delete TOPIC (through the PLAINTEXT listener)
admin() {
    "$ADMIN_PY" - "127.0.0.1:$PORT" "$@" <<'EOF'
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

# ---- certificates, kelp, the SCRAM user ------------------------------------------------------
make_certs() {
    CERTS="$(mktemp -d "${TMPDIR:-/tmp}/kelp-bench-certs.XXXXXX")"
    (
        cd "$CERTS"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
            -subj '/CN=kelp-bench-ca' 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
            -subj '/CN=localhost' 2>/dev/null
        printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
            'keyUsage=digitalSignature,keyEncipherment' 'extendedKeyUsage=serverAuth' >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
            -days 2 -extfile server.ext 2>/dev/null
    )
}

CLK_TCK="$(getconf CLK_TCK)"
# utime + stime of a process, every thread included, in clock ticks; the stime part alone.
cpu_ticks() { local f; f="$(cat "/proc/$1/stat")"; f="${f##*) }"; set -- $f; echo $((${12} + ${13})); }
sys_ticks() { local f; f="$(cat "/proc/$1/stat")"; f="${f##*) }"; set -- $f; echo "${13}"; }

start_kelp() {
    RUST_LOG="${RUST_LOG:-warn}" taskset -c "$SUT_CPU" "$KELP" serve \
        --listeners "PLAINTEXT://127.0.0.1:$PORT,SECURE://127.0.0.1:$SEC_PORT" \
        --listener-security-protocol-map SECURE:SASL_SSL \
        --ssl-certificate-location "$CERTS/server.pem" --ssl-key-location "$CERTS/server.key" \
        --admin-listen off --schema-registry-listen off \
        --runtime tokio --storage memory >>"$OUT/kelp.log" 2>&1 &
    KELP_PID=$!
    local i p
    for p in "$PORT" "$SEC_PORT"; do
        for i in $(seq 1 300); do
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
            kill -0 "$KELP_PID" 2>/dev/null || { echo "kelp exited at start (see $OUT/kelp.log)" >&2; exit 1; }
            [ "$i" = 300 ] && { echo "kelp did not listen on $p within 30 s" >&2; exit 1; }
            sleep 0.1
        done
    done
}

PASSWORD="$(openssl rand -hex 16)"
SEC_ARGS=() # set once the CA exists

# ---- one run ---------------------------------------------------------------------------------
RESULTS="$OUT/results.tsv"
FAILED=0

# rdperf NAME PROTOCOL ARGS...: rdkafka_performance on the load core against the PROTOCOL
# listener, under /usr/bin/time for its own CPU (NAME.time) and kelp's CPU read around it.
# Sets TICKS and STICKS (kelp's ticks and kernel ticks over the run).
rdperf() {
    local name=$1 proto=$2
    shift 2
    local cmd
    if [ "$proto" = SASL_SSL ]; then
        cmd=("$RDPERF" -b "127.0.0.1:$SEC_PORT" "$@" "${SEC_ARGS[@]}")
    else
        cmd=("$RDPERF" -b "127.0.0.1:$PORT" "$@")
    fi
    local shown="${cmd[*]}"
    echo "${shown//$PASSWORD/***}" >"$OUT/$name.cmd"
    local before sbefore
    before="$(cpu_ticks "$KELP_PID")"; sbefore="$(sys_ticks "$KELP_PID")"
    timeout -k 5 -s INT "$CAP" taskset -c "$LOAD_CPU" /usr/bin/time -f '%U %S' -o "$OUT/$name.time" \
        "${cmd[@]}" >"$OUT/$name.out" 2>&1 || true
    TICKS=$(($(cpu_ticks "$KELP_PID") - before)); STICKS=$(($(sys_ticks "$KELP_PID") - sbefore))
}
# "... N delivered ... in Tms: R msgs/s and M MB/s ..."
parse_produce() { sed -n 's/.* \([0-9]*\) delivered .* in \([0-9]*\)ms: \([0-9]*\) msgs\/s and \([0-9.]*\) MB\/s.*/\1 \2 \3 \4/p' "$1" | tail -n 1; }
# "% N messages (B bytes) consumed in Tms: R msgs/s (M MB/s)"
parse_consume() { sed -n 's/^% \([0-9]*\) messages (.*consumed in \([0-9]*\)ms: \([0-9]*\) msgs\/s (\([0-9.]*\) MB\/s).*/\1 \2 \3 \4/p' "$1" | tail -n 1; }

# row KIND PROTOCOL SIZE RUN COUNT TOPIC
row() {
    local kind=$1 proto=$2 size=$3 run=$4 count=$5 topic=$6
    local name="$kind-$size-$proto-$run" r
    if [ "$kind" = produce ]; then
        rdperf "$name" "$proto" -P -t "$topic" -s "$size" -c "$count" -a "$ACKS" -X linger.ms=5 -i 60000
        r="$(parse_produce "$OUT/$name.out")"
    else
        rdperf "$name" "$proto" -G "bench-$topic" -t "$topic" -c "$count" -X auto.offset.reset=earliest -i 60000
        r="$(parse_consume "$OUT/$name.out")"
    fi
    if [ -z "$r" ]; then
        log "  $name: no summary (see $OUT/$name.out)"
        FAILED=1
        return 1
    fi
    set -- $r
    if [ "$1" -lt "$count" ]; then
        log "  $name: only $1 of $count records (see $OUT/$name.out)"
        FAILED=1
    fi
    local recs=$1 rate=$3 mbs=$4 cpu_ns kpct client_ns
    cpu_ns=$((TICKS * 1000000000 / CLK_TCK / recs))
    kpct=-; [ "$TICKS" -gt 0 ] && kpct=$((STICKS * 100 / TICKS))
    client_ns="$(awk -v n="$recs" '{printf "%d", ($1 + $2) * 1e9 / n}' "$OUT/$name.time" 2>/dev/null || echo -)"
    log "  $kind ${size}B $proto run $run: $rate records/s, $mbs MB/s, kelp $cpu_ns ns CPU/record ($kpct% kernel), client $client_ns ns CPU/record ($recs records)"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$size" "$proto" "$run" "$recs" "$rate" "$mbs" \
        "$cpu_ns" "$kpct" "$client_ns" >>"$RESULTS"
}

# ---- main ------------------------------------------------------------------------------------
if [ -n "${KELP_BENCH_BIN:-}" ]; then
    KELP="$KELP_BENCH_BIN"
else
    log "building kelp (release)"
    cargo build -q --release -p kelp
    KELP="$CARGO_TARGET_DIR/release/kelp"
fi
[ -x "$KELP" ] || { echo "no kelp binary at $KELP" >&2; exit 1; }
build_rdkafka_performance_ssl
find_admin_python
make_certs
SEC_ARGS=(-X security.protocol=SASL_SSL -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=bench
    -X "sasl.password=$PASSWORD" -X "ssl.ca.location=$CERTS/ca.pem")
start_kelp
printf '%s\n' "$PASSWORD" | "$KELP" user --bootstrap "127.0.0.1:$PORT" set bench --mechanism SCRAM-SHA-512 \
    >>"$OUT/kelp-user.log" 2>&1 || { echo "kelp user set failed (see $OUT/kelp-user.log)" >&2; exit 1; }

tls="$(openssl s_client -connect "127.0.0.1:$SEC_PORT" -CAfile "$CERTS/ca.pem" -brief </dev/null 2>&1 \
    | sed -n 's/^\(Protocol version\|Ciphersuite\): *//p' | paste -sd ' ' || true)"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "pinning: kelp on CPU $SUT_CPU, rdkafka_performance on CPU $LOAD_CPU"
    echo "kelp: $("$KELP" --version | awk '{print $2}') ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), --runtime tokio --storage memory, listeners PLAINTEXT and SASL_SSL (rustls, ring)"
    echo "load generator: rdkafka_performance, librdkafka $("$RDPERF" 2>&1 | sed -n 's/^librdkafka version \([^ ]*\).*/\1/p'), $(openssl version | cut -d' ' -f1-2)"
    echo "TLS (openssl s_client, the same OpenSSL defaults as librdkafka): ${tls:-?}; server certificate RSA 2048; SASL SCRAM-SHA-512"
    echo "records: $N_SMALL of 100 B, $N_LARGE of 1 KiB; 3 partitions; acks=$ACKS, linger.ms=5, no compression; consumer group; median of $REPEATS runs"
} >"$OUT/machine.txt"
log "$(cat "$OUT/machine.txt")"

printf 'kind\tsize\tprotocol\trun\trecords\trecords_per_s\tmb_per_s\tkelp_cpu_ns_per_record\tkelp_kernel_pct\tclient_cpu_ns_per_record\n' >"$RESULTS"
for size in 100 1024; do
    count=$N_SMALL
    [ "$size" -gt 100 ] && count=$N_LARGE
    for run in $(seq 1 "$REPEATS"); do
        order="PLAINTEXT SASL_SSL"
        [ $((run % 2)) = 0 ] && order="SASL_SSL PLAINTEXT"
        for proto in $order; do
            topic="sec-$size-$proto-$run"
            admin create "$topic" 3
            row produce "$proto" "$size" "$run" "$count" "$topic" || true
            row consume "$proto" "$size" "$run" "$count" "$topic" || true
            admin delete "$topic" || true
        done
    done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

python3 - "$RESULTS" >"$OUT/summary.txt" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])][1:]
runs = {}
for kind, size, proto, run, recs, rate, mbs, cpu, kpct, client in rows:
    runs.setdefault((kind, int(size), proto), {})[int(run)] = (
        float(rate), float(mbs), float(cpu) / 1000, float(client) / 1000 if client != "-" else None)
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, spec):
    return "-" if x is None else format(x, spec)
print("| row | PLAINTEXT records/s | SASL_SSL records/s | **throughput SASL_SSL / PLAINTEXT** (runs) "
      "| PLAINTEXT MB/s | SASL_SSL MB/s | kelp CPU µs/record, PLAINTEXT → SASL_SSL | **kelp CPU ratio** "
      "| client CPU µs/record, PLAINTEXT → SASL_SSL |")
print("|---|---|---|---|---|---|---|---|---|")
verdict = []
for kind in ("produce", "consume"):
    for size in (100, 1024):
        p, s = runs.get((kind, size, "PLAINTEXT"), {}), runs.get((kind, size, "SASL_SSL"), {})
        if not p or not s:
            continue
        m = {k: [med(v[i] for v in d.values()) for i in range(4)] for k, d in (("p", p), ("s", s))}
        ratio = m["s"][0] / m["p"][0]
        per_run = sorted(s[r][0] / p[r][0] for r in p if r in s)
        cpu_ratio = m["s"][2] / m["p"][2] if m["p"][2] else None
        label = f"{kind} {'100 B' if size == 100 else '1 KiB'}"
        print(f"| {label} | {m['p'][0]:,.0f} | {m['s'][0]:,.0f} | **{ratio:.2f}** ({per_run[0]:.2f}-{per_run[-1]:.2f}) "
              f"| {m['p'][1]:.1f} | {m['s'][1]:.1f} | {m['p'][2]:.2f} → {m['s'][2]:.2f} | **{fmt(cpu_ratio, '.2f')}** "
              f"| {fmt(m['p'][3], '.2f')} → {fmt(m['s'][3], '.2f')} |")
        if size == 1024:
            verdict.append(f"{label}: SASL_SSL at {ratio:.2f} of PLAINTEXT (target 0.70): {'met' if ratio >= 0.7 else 'NOT met'}")
print()
print("| row | kelp's core busy, PLAINTEXT → SASL_SSL | load generator's core busy, PLAINTEXT → SASL_SSL |")
print("|---|---|---|")
for kind in ("produce", "consume"):
    for size in (100, 1024):
        p, s = runs.get((kind, size, "PLAINTEXT"), {}), runs.get((kind, size, "SASL_SSL"), {})
        if not p or not s:
            continue
        # CPU per record times records per second: the share of one core in use while records
        # flowed (the CPU window also holds the connection and, for consumers, the group join).
        busy = lambda d, i: med(d[r][0] * d[r][i] / 1e6 * 100 if d[r][i] is not None else None for r in d)
        label = f"{kind} {'100 B' if size == 100 else '1 KiB'}"
        print(f"| {label} | {fmt(busy(p, 2), '.0f')}% → {fmt(busy(s, 2), '.0f')}% | {fmt(busy(p, 3), '.0f')}% → {fmt(busy(s, 3), '.0f')}% |")
print()
print("Medians over the runs; (runs): the lowest and highest ratio of a run's SASL_SSL row to the")
print("same repeat's PLAINTEXT row. CPU per record: kelp's utime + stime over the run, and the load")
print("generator's own, divided by the records.")
print()
for v in verdict:
    print(v)
EOF
cat "$OUT/machine.txt" "$OUT/summary.txt"
log "results in $OUT"
[ "$FAILED" = 0 ] || { echo "bench-security: a row failed (see $OUT)" >&2; exit 1; }
