#!/usr/bin/env bash
# The schema registry of `kelp serve` under an HTTP load generator (figures go to
# docs/BENCHMARKS.md, "Schema registry").
#
#   scripts/bench-registry.sh            build kelp (release), register the schemas, run every row
#   scripts/bench-registry.sh --smoke    a second per row: checks that the script works
#
# kelp (memory store) runs pinned to one core (KELP_BENCH_SUT_CPU, default 0), the load
# generator to the other (KELP_BENCH_LOAD_CPU, default 1). First 1000 Avro schemas are registered
# over 50 subjects (20 versions each, compatibility NONE so that registration costs no checks).
# Then, with keep-alive connections:
#   lookup      GET /schemas/ids/{id}, ids cycling over the 1000 registered ones
#   register    POST /subjects/{s}/versions with a schema that subject already holds: the
#               registry answers its existing id and writes nothing
# Each runs at full rate (wrk, closed loop: KELP_BENCH_CONNS connections, default 32, one thread)
# and at a fixed rate of half what the full-rate row reached (oha -q, open loop, with
# --latency-correction, so a request's latency runs from when it was due, not from when a busy
# connection got to send it). Every response must be a 200; any other status, or a failed
# request, fails the script.
#
# Columns: rate (req/s), p50 and p99 (ms), errors (non-200 + failed), kelp's CPU per request
# (utime + stime of the kelp process, all its threads, from /proc/PID/stat, before and after the
# row), kelp's and the load generator's CPU use over the row (100% = one core), and the load
# average when the row started (the machine is shared; a busy machine moves the rates).
#
# Settings: KELP_BENCH_SECONDS (10 per row), KELP_BENCH_CONNS (32), KELP_BENCH_REG_PORT (18081),
# KELP_BENCH_PORT (19392, the Kafka listener, which nothing here uses), KELP_BENCH_BIN (a kelp
# binary to use instead of building one), KELP_BENCH_OUT (results directory).
# Tools: wrk (apt-get install wrk) and oha (cargo install oha --locked), installed when missing.
# Everything started here is stopped by pid on exit, failure included.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kelp-target}"
SUT_CPU="${KELP_BENCH_SUT_CPU:-0}"
LOAD_CPU="${KELP_BENCH_LOAD_CPU:-1}"
REG_PORT="${KELP_BENCH_REG_PORT:-18081}"
PORT="${KELP_BENCH_PORT:-19392}"
SECONDS_PER_ROW="${KELP_BENCH_SECONDS:-10}"
CONNS="${KELP_BENCH_CONNS:-32}"
SUBJECTS=50
VERSIONS=20
MODE=full
case "${1:-}" in
    --smoke) MODE=smoke; SECONDS_PER_ROW=1 ;;
    "") ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
esac
if [ "$(nproc 2>/dev/null || echo 1)" -lt 2 ]; then SUT_CPU=0; LOAD_CPU=0; fi
OUT="${KELP_BENCH_OUT:-$HOME/.cache/kelp-bench-results/$(date -u +%Y%m%dT%H%M%SZ)-registry}"
mkdir -p "$OUT"
BASE="http://127.0.0.1:$REG_PORT"

kelp_pid=""
cleanup() {
    if [ -n "$kelp_pid" ]; then
        kill "$kelp_pid" 2>/dev/null || true
        wait "$kelp_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM # exit, so that cleanup runs once

log() { printf '%s\n' "$*" | tee -a "$OUT/bench.log" >&2; }

# ---- tools -----------------------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    log "installing wrk (apt-get)"
    apt-get install -y wrk >>"$OUT/install.log" 2>&1 || { apt-get update >>"$OUT/install.log" 2>&1 && apt-get install -y wrk >>"$OUT/install.log" 2>&1; }
fi
OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
if [ ! -x "$OHA" ]; then
    log "installing oha (cargo install oha --locked; a few minutes)"
    cargo install oha --locked >>"$OUT/install.log" 2>&1
fi
PY=python3

if [ -z "${KELP_BENCH_BIN:-}" ]; then
    log "building kelp (release)"
    cargo build -q --release -p kelp
    KELP_BIN="$CARGO_TARGET_DIR/release/kelp"
else
    KELP_BIN="$KELP_BENCH_BIN"
fi

{
    echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "machine: $(nproc) CPUs ($(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "kelp: $("$KELP_BIN" --version 2>/dev/null || echo '?'), git $(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo "tools: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $("$OHA" --version 2>/dev/null)"
    echo "pinning: kelp on CPU $SUT_CPU, load generator on CPU $LOAD_CPU; $CONNS connections; $SECONDS_PER_ROW s per row ($MODE)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

# ---- kelp ------------------------------------------------------------------------------------
KELP_SCHEMA_REGISTRY_LISTEN="127.0.0.1:$REG_PORT" RUST_LOG="${RUST_LOG:-warn}" taskset -c "$SUT_CPU" "$KELP_BIN" serve \
    --listen "127.0.0.1:$PORT" --admin-listen off --storage memory >"$OUT/kelp.log" 2>&1 &
kelp_pid=$!
ready=""
for _ in $(seq 1 300); do
    kill -0 "$kelp_pid" 2>/dev/null || { echo "kelp exited at start; its log:" >&2; cat "$OUT/kelp.log" >&2; exit 1; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/subjects" || true)" = 200 ]; then ready=1; break; fi
    sleep 0.1
done
[ -n "$ready" ] || { echo "the registry did not answer on $REG_PORT within 30 s" >&2; exit 1; }

# ---- data ------------------------------------------------------------------------------------
# Registers the schemas; writes the request lists the load generators cycle through:
#   ids.txt          one registered id a line
#   register.jsonl   {"path": ..., "body": ...}: one schema each subject already holds
log "registering $((SUBJECTS * VERSIONS)) schemas over $SUBJECTS subjects"
"$PY" - "$BASE" "$SUBJECTS" "$VERSIONS" "$OUT" <<'EOF'
import json, sys, urllib.request
base, subjects, versions, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
H = {"Content-Type": "application/vnd.schemaregistry.v1+json"}

def call(method, path, body):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), headers=H, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)

call("PUT", "/config", {"compatibility": "NONE"})
ids, bodies = [], []
for s in range(subjects):
    for v in range(versions):
        schema = json.dumps({
            "type": "record", "name": f"Event{v}", "namespace": f"bench.s{s}",
            "fields": [
                {"name": "id", "type": "long"},
                {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                {"name": "source", "type": "string"},
                {"name": f"payload{v}", "type": ["null", "bytes"], "default": None},
                {"name": "tags", "type": {"type": "map", "values": "string"}},
            ],
        })
        body = json.dumps({"schema": schema})
        got = call("POST", f"/subjects/bench-s{s}-value/versions", {"schema": schema})
        ids.append(got["id"])
        if v == versions // 2:
            bodies.append({"path": f"/subjects/bench-s{s}-value/versions", "body": body})
assert len(set(ids)) == len(ids), "every schema should have its own id"
with open(f"{out}/ids.txt", "w") as f:
    f.write("\n".join(map(str, ids)) + "\n")
with open(f"{out}/register.jsonl", "w") as f:
    for b in bodies:
        f.write(json.dumps(b) + "\n")
# Register-existing answers the id the schema already has.
again = call("POST", bodies[0]["path"], json.loads(bodies[0]["body"]))
assert again["id"] == ids[versions // 2], (again, ids[versions // 2])
EOF
id_min="$(sort -n "$OUT/ids.txt" | head -n 1)"
id_max="$(sort -n "$OUT/ids.txt" | tail -n 1)"
[ "$((id_max - id_min + 1))" = "$(wc -l <"$OUT/ids.txt")" ] || { echo "ids are not contiguous" >&2; exit 1; }

# wrk scripts: each connection walks the request list from its own starting point; done()
# prints one JSON line with what the table needs.
cat >"$OUT/wrk-common.lua" <<'EOF'
local counter = 0
local reqs = {}
init = function(args)
    local f = assert(io.open(args[1]))
    for line in f:lines() do reqs[#reqs + 1] = line end
    f:close()
end
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, "failed": %d}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        e.status, e.connect + e.read + e.write + e.timeout))
end
EOF
cat "$OUT/wrk-common.lua" >"$OUT/wrk-lookup.lua"
cat >>"$OUT/wrk-lookup.lua" <<'EOF'
local built = {}
request = function()
    counter = counter + 1
    local i = (counter % #reqs) + 1
    local r = built[i]
    if r == nil then
        r = wrk.format("GET", "/schemas/ids/" .. reqs[i])
        built[i] = r
    end
    return r
end
EOF
cat "$OUT/wrk-common.lua" >"$OUT/wrk-register.lua"
cat >>"$OUT/wrk-register.lua" <<'EOF'
local built = {}
request = function()
    counter = counter + 1
    local i = (counter % #reqs) + 1
    local r = built[i]
    if r == nil then
        local path, body = reqs[i]:match("^(%S+) (.*)$")
        r = wrk.format("POST", path, {["Content-Type"] = "application/vnd.schemaregistry.v1+json"}, body)
        built[i] = r
    end
    return r
end
EOF
# The register list for wrk: "PATH BODY" a line.
"$PY" -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(r["path"], r["body"])' "$OUT/register.jsonl" >"$OUT/register.txt"

# ---- measuring -------------------------------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"
ticks() { # utime + stime of a process, all its threads
    local f
    f="$(cat "/proc/$1/stat")"
    f="${f##*) }"
    # shellcheck disable=SC2086
    set -- $f
    echo $((${12} + ${13}))
}
# Runs a load generator on the load core; prints the seconds of CPU it used (user + system,
# children included) into the file $2.
run_load() { # out-file cpu-file command...
    local out=$1 cpu=$2
    shift 2
    taskset -c "$LOAD_CPU" "$PY" -c '
import resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    rc = subprocess.run(sys.argv[3:], stdout=out).returncode
u = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[2], "w").write(f"{u.ru_utime + u.ru_stime:.3f}\n")
sys.exit(rc)' "$out" "$cpu" "$@"
}

RESULTS="$OUT/results.tsv"
printf 'row\ttool\ttarget_rate\trate\tp50_ms\tp99_ms\terrors\tkelp_cpu_us_per_req\tkelp_cpu_pct\tload_cpu_pct\tloadavg\n' >"$RESULTS"
FAILED=0
LAST_RATE=0
# row NAME TOOL TARGET_RATE: runs one row, appends it to results.tsv, sets LAST_RATE.
row() {
    local name=$1 tool=$2 target=$3 kind=${1%%-*}
    local out="$OUT/$name.out" cpu="$OUT/$name.cpu" load before after t0 t1
    load="$(cut -d' ' -f1 /proc/loadavg)"
    before="$(ticks "$kelp_pid")"
    t0="$(date +%s%N)"
    if [ "$tool" = wrk ]; then
        local list=ids.txt
        [ "$kind" = register ] && list=register.txt
        run_load "$out" "$cpu" wrk -t1 -c"$CONNS" -d"${SECONDS_PER_ROW}s" --latency -s "$OUT/wrk-$kind.lua" "$BASE" -- "$OUT/$list" || true
    else
        local args=()
        if [ "$kind" = lookup ]; then
            # ids are contiguous: a random one of them, per request
            args=(--rand-regex-url "$BASE/schemas/ids/$(id_regex "$id_min" "$id_max")")
        else
            # oha sends one body: the subject's schema of the first register line
            local path body
            path="$(head -n 1 "$OUT/register.txt" | cut -d' ' -f1)"
            body="$(head -n 1 "$OUT/register.txt" | cut -d' ' -f2-)"
            args=(-m POST -T application/vnd.schemaregistry.v1+json -d "$body" "$BASE$path")
        fi
        run_load "$out" "$cpu" "$OHA" --no-tui --output-format json --worker-threads 1 -z "${SECONDS_PER_ROW}s" -c "$CONNS" \
            -q "$target" --latency-correction "${args[@]}" || true
    fi
    t1="$(date +%s%N)"
    after="$(ticks "$kelp_pid")"
    local line
    line="$("$PY" - "$tool" "$out" "$((after - before))" "$CLK_TCK" "$((t1 - t0))" "$(cat "$cpu" 2>/dev/null || echo 0)" <<'EOF'
import json, sys
tool, path, kelp_ticks, tck, wall_ns, load_cpu = sys.argv[1:7]
kelp_s = int(kelp_ticks) / int(tck)
wall = int(wall_ns) / 1e9
try:
    text = open(path).read()
    if tool == "wrk":
        j = json.loads([l for l in text.splitlines() if l.startswith("{")][-1])
        n = j["requests"]
        rate = n / (j["duration_us"] / 1e6)
        p50, p99 = j["p50_us"] / 1e3, j["p99_us"] / 1e3
        errors = j["non_2xx"] + j["failed"]
    else:
        j = json.loads(text)
        codes = {int(k): v for k, v in j["statusCodeDistribution"].items()}
        n = sum(codes.values())
        rate = j["summary"]["requestsPerSec"]
        p50, p99 = j["latencyPercentiles"]["p50"] * 1e3, j["latencyPercentiles"]["p99"] * 1e3
        # Requests still in flight when the time is up are cut ("aborted due to deadline"):
        # not failures.
        failed = {k: v for k, v in j.get("errorDistribution", {}).items() if "deadline" not in k}
        errors = sum(v for k, v in codes.items() if k != 200) + sum(failed.values())
except Exception as e:  # the tool failed: a failed row
    print(f"-\t-\t-\t-\t-\t-\t-\t{e}")
    sys.exit(0)
cpu_us = kelp_s * 1e6 / n if n else 0
print(f"{rate:.0f}\t{p50:.3f}\t{p99:.3f}\t{errors}\t{cpu_us:.1f}\t{100 * kelp_s / wall:.0f}\t{100 * float(load_cpu) / wall:.0f}")
EOF
)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$tool" "$target" "$line" "$load" >>"$RESULTS"
    log "  $name ($tool, target ${target}): $(echo "$line" | awk -F'\t' '{printf "%s req/s, p50 %s ms, p99 %s ms, errors %s, kelp %s us CPU/req (%s%% of a core), load generator %s%%", $1, $2, $3, $4, $5, $6, $7}')"
    local rate errors
    rate="$(echo "$line" | cut -f1)"
    errors="$(echo "$line" | cut -f4)"
    if [ "$rate" = - ] || [ "$errors" != 0 ]; then
        log "  $name FAILED: errors $errors (see $out)"
        FAILED=1
    fi
    LAST_RATE="${rate%.*}"
    [ "$LAST_RATE" = - ] && LAST_RATE=0
    return 0
}
# A regex matching exactly the integers lo..hi (as oha's --rand-regex-url draws them): an
# alternation of the numbers themselves, which is plain and exact.
id_regex() {
    local lo=$1 hi=$2 out="" i
    for ((i = lo; i <= hi; i++)); do out+="${out:+|}$i"; done
    echo "($out)"
}

# warm-up: the connections, the allocator, the caches
run_load "$OUT/warmup.out" "$OUT/warmup.cpu" wrk -t1 -c"$CONNS" -d1s -s "$OUT/wrk-lookup.lua" "$BASE" -- "$OUT/ids.txt" >/dev/null || true

log "rows ($SECONDS_PER_ROW s each)"
row lookup-full wrk max
half=$((LAST_RATE / 2))
[ "$half" -gt 0 ] || half=1
row lookup-half oha "$half"
row register-full wrk max
half=$((LAST_RATE / 2))
[ "$half" -gt 0 ] || half=1
row register-half oha "$half"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
top -b -n 1 | head -n 15 >"$OUT/top.txt" 2>/dev/null || true

"$PY" - "$RESULTS" "$OUT/machine.txt" >"$OUT/table.md" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
names = {"lookup": "GET /schemas/ids/{id}", "register": "POST /subjects/{s}/versions, existing schema"}
print("| request | load | rate (req/s) | p50 (ms) | p99 (ms) | errors | kelp CPU per request (µs) | kelp CPU | load generator CPU | load average |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    kind, how = r["row"].split("-")
    load = f"full, {r['tool']}" if how == "full" else f"fixed {int(r['target_rate']):,}/s, {r['tool']}"
    rate = r["rate"] if r["rate"] == "-" else f"{int(r['rate']):,}"
    print(f"| {names[kind]} | {load} | {rate} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} "
          f"| {r['kelp_cpu_us_per_req']} | {r['kelp_cpu_pct']}% | {r['load_cpu_pct']}% | {r['loadavg']} |")
print()
print(open(sys.argv[2]).read().strip().replace("\n", "  \n"))
EOF
cat "$OUT/table.md"
log "results in $OUT"
[ "$FAILED" = 0 ] || { echo "bench-registry: a row failed (non-200 answers or a failed load generator)" >&2; exit 1; }
