#!/usr/bin/env bash
# kelp end-to-end client: kcat (librdkafka's command-line producer and consumer).
#
#   kcat_client.sh --bootstrap 127.0.0.1:9092 --topic t --mode produce-verify \
#       [--compression none|gzip|snappy|lz4|zstd] [--count 1000] [--timeout 60]
#       [--security-protocol SASL_SSL --sasl-mechanism SCRAM-SHA-512 --sasl-username U
#        --sasl-password P --ssl-ca ca.pem] [--ssl-cert client.pem --ssl-key client.key]
#
# The security flags (as e2e_common.py describes them) become -X security.protocol,
# ssl.ca.location, ssl.certificate.location, ssl.key.location, and a properties file (-F)
# with sasl.mechanisms, sasl.username and sasl.password. --ssl-keystore is accepted and unused.
#
# kcat has no admin API: the topic (3 partitions) must exist, so --create is refused.
#
# Mode produce-verify. kcat takes headers (-H) per run, not per message, and cannot set a
# message timestamp, so the N records are produced in groups: one `kcat -P` run per partition
# and per 50 consecutive records of that partition, each run with its own header set (1 to 3
# headers: a repeated key around another, a null value (-H name), an empty value), keys after a
# tab (-K). Every value that is empty on input is an empty value, except in the runs with -Z,
# where kcat sends it as a null value. Offsets come from kcat's delivery reports (-v -v), in
# send order. Then `kcat -C -e -J` reads every partition from the beginning (no group) and each
# record is compared with what was acked; timestamps must be CreateTime and within the time the
# produce runs took; `kcat -Q` checks the earliest and latest offsets of each partition.
#
# Needs kcat and python3 (which generates the input and checks the JSON). Exit 0 with a one-line
# JSON summary when every check passed; exit 1 with what differed.
set -euo pipefail

usage() {
    sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
}

BOOTSTRAP="" TOPIC="" MODE="" COMPRESSION="none" COUNT=1000 TIMEOUT=60
SECURITY_PROTOCOL="PLAINTEXT" SASL_MECHANISM="" SASL_USERNAME="" SASL_PASSWORD="" SSL_CA="" SSL_CERT="" SSL_KEY=""
while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --bootstrap | --topic | --mode | --compression | --count | --timeout | --security-protocol | \
            --sasl-mechanism | --sasl-username | --sasl-password | --ssl-ca | --ssl-cert | --ssl-key | --ssl-keystore)
            [ $# -ge 2 ] || {
                usage >&2
                echo "error: $1 needs a value" >&2
                exit 2
            }
            case "$1" in
                --bootstrap) BOOTSTRAP="$2" ;;
                --topic) TOPIC="$2" ;;
                --mode) MODE="$2" ;;
                --compression) COMPRESSION="$2" ;;
                --count) COUNT="$2" ;;
                --timeout) TIMEOUT="$2" ;;
                --security-protocol) SECURITY_PROTOCOL="$2" ;;
                --sasl-mechanism) SASL_MECHANISM="$2" ;;
                --sasl-username) SASL_USERNAME="$2" ;;
                --sasl-password) SASL_PASSWORD="$2" ;;
                --ssl-ca) SSL_CA="$2" ;;
                --ssl-cert) SSL_CERT="$2" ;;
                --ssl-key) SSL_KEY="$2" ;;
                --ssl-keystore) ;; # the Java client's key+chain file: --ssl-cert and --ssl-key here
            esac
            shift 2
            ;;
        --create)
            echo "error: kcat has no admin API to create topics; create the topic beforehand" >&2
            exit 2
            ;;
        *)
            usage >&2
            echo "error: unknown argument $1" >&2
            exit 2
            ;;
    esac
done
die_usage() {
    usage >&2
    echo "error: $*" >&2
    exit 2
}
if [ -z "$BOOTSTRAP" ] || [ -z "$TOPIC" ] || [ -z "$MODE" ]; then
    die_usage "--bootstrap, --topic and --mode are required"
fi
[ "$MODE" = "produce-verify" ] || die_usage "--mode $MODE: kcat_client.sh has produce-verify only"
case "$COMPRESSION" in none | gzip | snappy | lz4 | zstd) ;; *) die_usage "unknown --compression $COMPRESSION" ;; esac
[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die_usage "--count must be a positive integer"
[[ "$TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die_usage "--timeout must be a positive whole number of seconds"

# ---- security: -X properties for every kcat run (none for PLAINTEXT) ---------------------------
# The password goes into a properties file (-F) rather than onto kcat's command line, where
# any process could read it.
SEC=()
SEC_SUMMARY="{}"
case "$SECURITY_PROTOCOL" in PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL) ;; *) die_usage "unknown --security-protocol $SECURITY_PROTOCOL" ;; esac
if [[ "$SECURITY_PROTOCOL" == SASL_* ]]; then
    [ -n "$SASL_MECHANISM" ] && [ -n "$SASL_USERNAME" ] && [ -n "$SASL_PASSWORD" ] ||
        die_usage "--security-protocol $SECURITY_PROTOCOL needs --sasl-mechanism, --sasl-username and --sasl-password"
    case "$SASL_MECHANISM" in SCRAM-SHA-512 | SCRAM-SHA-256 | PLAIN) ;; *) die_usage "unknown --sasl-mechanism $SASL_MECHANISM" ;; esac
elif [ -n "$SASL_MECHANISM$SASL_USERNAME$SASL_PASSWORD" ]; then
    die_usage "--sasl-* flags need a SASL --security-protocol"
fi
if [[ "$SECURITY_PROTOCOL" != *SSL ]] && [ -n "$SSL_CA$SSL_CERT$SSL_KEY" ]; then
    die_usage "--ssl-* flags need an SSL --security-protocol"
fi
if { [ -n "$SSL_CERT" ] && [ -z "$SSL_KEY" ]; } || { [ -z "$SSL_CERT" ] && [ -n "$SSL_KEY" ]; }; then
    die_usage "--ssl-cert and --ssl-key go together"
fi

PY="${KELP_PYTHON:-python3}"
command -v kcat >/dev/null || {
    echo "FAIL: kcat is not installed (scripts/install-clients.sh)" >&2
    exit 1
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
START=$SECONDS
step="starting"

if [ "$SECURITY_PROTOCOL" != "PLAINTEXT" ]; then
    SEC=(-X "security.protocol=$SECURITY_PROTOCOL")
    cert=false
    if [[ "$SECURITY_PROTOCOL" == SASL_* ]]; then
        (
            umask 077
            printf 'sasl.mechanisms=%s\nsasl.username=%s\nsasl.password=%s\n' \
                "$SASL_MECHANISM" "$SASL_USERNAME" "$SASL_PASSWORD" >"$work/sasl.properties"
        )
        SEC+=(-F "$work/sasl.properties")
    fi
    [ -n "$SSL_CA" ] && SEC+=(-X "ssl.ca.location=$SSL_CA")
    if [ -n "$SSL_CERT" ]; then
        SEC+=(-X "ssl.certificate.location=$SSL_CERT" -X "ssl.key.location=$SSL_KEY")
        cert=true
    fi
    SEC_SUMMARY="{\"security_protocol\": \"$SECURITY_PROTOCOL\""
    [[ "$SECURITY_PROTOCOL" == SASL_* ]] &&
        SEC_SUMMARY+=", \"sasl_mechanism\": \"$SASL_MECHANISM\", \"sasl_username\": \"$SASL_USERNAME\""
    [[ "$SECURITY_PROTOCOL" == *SSL ]] && SEC_SUMMARY+=", \"client_certificate\": $cert"
    SEC_SUMMARY+="}"
fi

fail() {
    [ $# -gt 1 ] && printf '%s\n' "${@:1:$#-1}" >&2
    printf 'FAIL: %s\n' "${!#}" >&2
    exit 1
}

# Runs kcat with what is left of the time limit; its stderr goes to $work/stderr.
kc() {
    local left=$((TIMEOUT - (SECONDS - START)))
    [ "$left" -gt 0 ] || fail "timed out after ${TIMEOUT}s during: $step"
    local rc=0
    timeout --kill-after=2 "$left" kcat -b "$BOOTSTRAP" "${SEC[@]}" "$@" 2>"$work/stderr" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        tail -n 15 "$work/stderr" >&2
        fail "timed out after ${TIMEOUT}s during: $step"
    fi
    return "$rc"
}

# ---- the plan: one kcat run per (partition, group of 50) --------------------------------------
# plan.tsv lines: run-number partition z-flag header-args... ; run-N.in: the input of run N;
# expected.json: every record with the run it belongs to.
step="planning"
"$PY" - "$COUNT" "$work" <<'EOF'
import json, sys

count, work = int(sys.argv[1]), sys.argv[2]
PARTITIONS, GROUP = 3, 50


def headers(g):
    """The header set of group g, as kcat -H arguments and as (key, value) pairs."""
    kind = g % 4
    idx = f"idx={g}"
    if kind == 0:
        args = [idx]
    elif kind == 1:
        args = [idx, "nil"]  # -H name without '=': a null value
    elif kind == 2:
        args = ["dup=first", idx, "dup=second"]
    else:
        args = [idx, "empty="]
    pairs = [(a.split("=", 1)[0], a.split("=", 1)[1] if "=" in a else None) for a in args]
    return args, pairs


runs = []
records = []
for p in range(PARTITIONS):
    mine = [i for i in range(count) if i % PARTITIONS == p]
    for g in range(0, (len(mine) + GROUP - 1) // GROUP):
        group = mine[g * GROUP:(g + 1) * GROUP]
        z = g % 3 == 1  # -Z: an empty value goes out as null
        args, pairs = headers(g)
        n = len(runs)
        runs.append((n, p, z, args))
        with open(f"{work}/run-{n}.in", "w") as f:
            for i in group:
                empty = i % 50 in (7, 23)
                value = "" if empty else f"value-{i}:" + "kelp-e2e-" * (i % 17)
                f.write(f"key-{i}\t{value}\n")
                records.append(
                    {
                        "i": i,
                        "run": n,
                        "partition": p,
                        "key": f"key-{i}",
                        "value": (None if z else "") if empty else value,
                        "headers": pairs,
                    }
                )
with open(f"{work}/plan.tsv", "w") as f:
    for n, p, z, args in runs:
        f.write("\t".join([str(n), str(p), "Z" if z else "-"] + args) + "\n")
with open(f"{work}/expected.json", "w") as f:
    json.dump(records, f)
EOF

# ---- produce ----------------------------------------------------------------------------------
zflag=()
[ "$COMPRESSION" = "none" ] || zflag=(-z "$COMPRESSION")
first_ms=$(date +%s%3N)
: >"$work/acks.tsv"
while IFS=$'\t' read -r -a run; do
    n="${run[0]}" partition="${run[1]}" z="${run[2]}"
    hargs=()
    for h in "${run[@]:3}"; do hargs+=(-H "$h"); done
    extra=()
    [ "$z" = "Z" ] && extra=(-Z)
    step="kcat -P run $n (partition $partition)"
    rc=0
    kc -P -t "$TOPIC" -p "$partition" -K $'\t' "${zflag[@]}" "${extra[@]}" "${hargs[@]}" \
        -X acks=all -v -v <"$work/run-$n.in" || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 15 "$work/stderr" >&2
        fail "$step: kcat exited with $rc"
    fi
    # "% Message delivered to partition P (offset O) on broker B", one per message, in order.
    sed -n 's/^% Message delivered to partition \([0-9-]*\) (offset \([0-9-]*\)).*/\1\t\2/p' \
        "$work/stderr" | sed "s/^/$n\t/" >>"$work/acks.tsv"
    if grep -q 'Delivery failed' "$work/stderr"; then
        fail "$step: $(grep -m1 'Delivery failed' "$work/stderr")"
    fi
done <"$work/plan.tsv"
last_ms=$(date +%s%3N)

# ---- read back --------------------------------------------------------------------------------
step="kcat -C (reading back)"
rc=0
kc -C -t "$TOPIC" -o beginning -e -J >"$work/consumed.jsonl" || rc=$?
if [ "$rc" -ne 0 ]; then
    tail -n 15 "$work/stderr" >&2
    fail "$step: kcat exited with $rc"
fi
for spec in -2 -1; do
    step="kcat -Q (offsets at $spec)"
    rc=0
    kc -Q -J -t "$TOPIC:0:$spec" -t "$TOPIC:1:$spec" -t "$TOPIC:2:$spec" >"$work/query$spec.json" || rc=$?
    if [ "$rc" -ne 0 ]; then
        tail -n 15 "$work/stderr" >&2
        fail "$step: kcat exited with $rc"
    fi
done

# ---- compare ----------------------------------------------------------------------------------
step="comparing"
"$PY" - "$work" "$TOPIC" "$COMPRESSION" "$first_ms" "$last_ms" "$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\) .*/\1 \2/p')" "$SEC_SUMMARY" <<'EOF'
import json, sys

work, topic, compression = sys.argv[1], sys.argv[2], sys.argv[3]
first_ms, last_ms = int(sys.argv[4]), int(sys.argv[5])
kcat_version, librdkafka_version = (sys.argv[6].split() + ["?", "?"])[:2]
PARTITIONS = 3

records = json.load(open(f"{work}/expected.json"))
acks = {}
for line in open(f"{work}/acks.tsv"):
    run, p, off = (int(x) for x in line.split("\t"))
    acks.setdefault(run, []).append((p, off))
errors = []

# Each run's delivery reports, in order, give its records' (partition, offset).
by_run = {}
for r in records:
    by_run.setdefault(r["run"], []).append(r)
for run, rs in sorted(by_run.items()):
    got = acks.get(run, [])
    if len(got) != len(rs):
        errors.append(f"kcat run {run}: {len(got)} delivery reports for {len(rs)} records")
    for r, (p, off) in zip(rs, got):
        r["acked"] = (p, off)

counts = [0] * PARTITIONS
for r in records:
    counts[r["partition"]] += 1
for p in range(PARTITIONS):
    sent = [r for r in records if r["partition"] == p]
    acked = [r.get("acked") for r in sent]
    if acked != [(p, k) for k in range(len(sent))]:
        k = next(k for k, a in enumerate(acked) if a != (p, k))
        errors.append(f"partition {p}: send #{k} (record {sent[k]['i']}) acked at {acked[k]}, expected offset {k}")

by_offset = {r["acked"]: r for r in records if "acked" in r}
consumed = [json.loads(line) for line in open(f"{work}/consumed.jsonl") if line.strip()]
for p in range(PARTITIONS):
    offsets = [m["offset"] for m in consumed if m["partition"] == p]
    if offsets != list(range(counts[p])):
        errors.append(f"partition {p}: read {len(offsets)} records, offsets {offsets[:4]}..., expected 0..{counts[p] - 1}")
for m in consumed:
    p, off = m["partition"], m["offset"]
    r = by_offset.get((p, off))
    if r is None:
        errors.append(f"partition {p} offset {off}: read a record no send was acked with")
        continue
    where = f"record {r['i']} (partition {p}, offset {off})"
    hs = m.get("headers") or []
    pairs = [[hs[j], hs[j + 1]] for j in range(0, len(hs), 2)]
    for field, want, have in (
        ("key", r["key"], m.get("key")),
        ("value", r["value"], m.get("payload")),
        ("headers", [list(h) for h in r["headers"]], pairs),
        ("timestamp type", "create", m.get("tstype")),
    ):
        if want != have:
            errors.append(f"{where}: {field} differs: expected {want!r}, got {have!r}")
    ts = m.get("ts")
    if not isinstance(ts, int) or not first_ms - 1000 <= ts <= last_ms + 1000:
        errors.append(f"{where}: timestamp {ts} outside the produce window [{first_ms}, {last_ms}]")

for spec, want in (("-2", [0] * PARTITIONS), ("-1", counts)):
    q = json.load(open(f"{work}/query{spec}.json")).get(topic, {})
    have = [q.get(str(p), {}).get("offset") for p in range(PARTITIONS)]
    if have != want:
        which = "earliest" if spec == "-2" else "latest"
        errors.append(f"{which} offsets per partition {have}, expected {want}")

if errors:
    n = len(errors)
    lines = errors[:25] + ([f"... and {n - 25} more differences"] if n > 25 else [])
    sys.stderr.write("\n".join(lines) + f"\nFAIL: {n} differences in {len(records)} records\n")
    sys.exit(1)
print(
    json.dumps(
        {
            "client": "kcat",
            "version": kcat_version,
            "librdkafka": librdkafka_version,
            "mode": "produce-verify",
            "topic": topic,
            "compression": compression,
            "records": len(records),
            "per_partition": counts,
            "kcat_runs": len(by_run),
        }
        | json.loads(sys.argv[7]),
        sort_keys=True,
    )
)
EOF
