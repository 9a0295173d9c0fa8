#!/usr/bin/env python3
"""kelp end-to-end client: confluent-kafka (librdkafka) against a running broker.

    python confluent_client.py --bootstrap 127.0.0.1:9092 --topic t --mode produce-verify \
        [--compression zstd] [--count 1000] [--create] [--timeout 60] \
        [--security-protocol SASL_SSL --sasl-mechanism SCRAM-SHA-512 --sasl-username U \
         --sasl-password P --ssl-ca ca.pem] [--ssl-cert client.pem --ssl-key client.key]

Security flags (e2e_common.py) map to security.protocol, sasl.mechanisms, sasl.username,
sasl.password, ssl.ca.location, ssl.certificate.location and ssl.key.location.

Modes:
  produce-verify  produce N keyed records with headers and explicit timestamps to partitions
                  i % 3, wait for every ack, read everything back with assign (no group
                  membership) and compare record by record with what was acked.
  admin           AdminClient: create, describe, describe configs, incremental alter, create
                  partitions, delete records, delete topic; one line per step that passed.
  produce         N records key "k{i}", value "v{i}" to partition i % P (--first, --partitions).
  group           one member of --group (e2e_common.py describes the events it prints): subscribe,
                  no auto commit, a synchronous commit after each poll batch, librdkafka's
                  default assignors (range, roundrobin: eager), until --stop-file or --idle-exit.
  keyless         on a compacted topic (cleanup.policy=compact) the harness made: N keyed records
                  to partition 0 and a flush, one record without a key, whose delivery must fail
                  with INVALID_RECORD, a flush, N more keyed records; then reads partition 0 back
                  and checks it holds exactly the 2N keyed records.

Exit 0 with a one-line JSON summary when every check passed; exit 1 with what differed.
Run it with the python of the venv that holds confluent-kafka (scripts/install-clients.sh).
"""

import concurrent.futures
import logging
import os
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2e_common as common  # noqa: E402

args = common.parse_args(
    "kelp end-to-end client on confluent-kafka",
    ("produce-verify", "admin", "produce", "group", "keyless"),
    has_admin=True,
)
dog = common.Watchdog(args.timeout)

dog.step = "importing confluent_kafka"
from confluent_kafka import (  # noqa: E402
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka import __version__ as CK_VERSION  # noqa: E402
from confluent_kafka import libversion  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

COMPRESSION = {"none": "none", "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}
TS_TYPES = {TIMESTAMP_CREATE_TIME: common.CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME: "LogAppendTime"}


def on_error(err):
    # librdkafka reports connection trouble here and retries by itself; keep it for the
    # failure report, and give up early only on errors it calls fatal.
    dog.note(str(err))
    if err.fatal():
        common.fail(f"fatal client error during {dog.step}: {err}")


class KeepLogs(logging.Handler):
    """librdkafka's log lines go to the failure report instead of flooding stderr."""

    def emit(self, record):
        dog.note(record.getMessage())


LOGGER = logging.getLogger("librdkafka")
LOGGER.addHandler(KeepLogs())
LOGGER.propagate = False
LOGGER.setLevel(logging.INFO)  # librdkafka's info lines say why it disconnected


def security_conf():
    """librdkafka's names for the shared security flags (e2e_common.py); none for PLAINTEXT."""
    if args.security_protocol == "PLAINTEXT":
        return {}
    conf = {"security.protocol": args.security_protocol.lower()}
    if common.uses_sasl(args):
        conf |= {
            "sasl.mechanisms": args.sasl_mechanism,
            "sasl.username": args.sasl_username,
            "sasl.password": args.sasl_password,
        }
    for flag, key in (
        ("ssl_ca", "ssl.ca.location"),
        ("ssl_cert", "ssl.certificate.location"),
        ("ssl_key", "ssl.key.location"),
    ):
        if getattr(args, flag) is not None:
            conf[key] = getattr(args, flag)
    return conf


def base_conf():
    return {
        "bootstrap.servers": args.bootstrap,
        "client.id": "kelp-e2e-confluent",
        "error_cb": on_error,
        "logger": LOGGER,
    } | security_conf()


ADMINS = []  # admin clients whose error and log callbacks need poll() to run


def admin_client():
    admin = AdminClient(base_conf())
    ADMINS.append(admin)
    return admin


def pump():
    """Serves the admin clients' error and log callbacks."""
    for admin in ADMINS:
        admin.poll(0)


def wait(future, what):
    """The result of an admin future, or a failure naming the step."""
    while not future.done() and not dog.expired():
        try:
            future.exception(timeout=0.2)
        except concurrent.futures.TimeoutError:
            pass
        pump()
    try:
        return future.result(timeout=0)
    except KafkaException as e:
        common.fail(f"{what}: {e.args[0] if e.args else e}")
    except concurrent.futures.TimeoutError:
        common.fail(f"{what}: no answer in time")
    except Exception as e:
        common.fail(f"{what}: {type(e).__name__}: {e}")


def eventually(what, probe, want):
    """Polls probe() until it returns want (metadata may lag a create), bounded by the run."""
    dog.step = what
    have = None
    while not dog.expired():
        have = probe()
        pump()
        if have == want:
            return have
        time.sleep(min(0.2, dog.remaining()))
    common.fail(f"{what}: expected {want!r}, last seen {have!r}")


def create_topic(admin, partitions=common.PARTITIONS, config=None):
    dog.step = f"create topic {args.topic}"
    new = NewTopic(args.topic, num_partitions=partitions, replication_factor=1, config=config or {})
    fs = admin.create_topics([new], request_timeout=dog.remaining())
    wait(fs[args.topic], dog.step)


def partition_count(admin):
    fs = admin.describe_topics(TopicCollection([args.topic]), request_timeout=min(5.0, dog.remaining(1.0)))
    try:
        return len(fs[args.topic].result(timeout=min(6.0, dog.remaining())).partitions)
    except KafkaException as e:
        return f"error: {e.args[0] if e.args else e}"
    except Exception as e:  # no answer within the probe's time
        return f"error: {type(e).__name__} {e}"


# ---- produce-verify ---------------------------------------------------------------------------


def produce(records, compression, extra_conf=None):
    """Sends every record and waits for every delivery report; fills in acked (partition, offset)."""
    conf = base_conf() | {
        "compression.type": COMPRESSION[compression],
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": int(dog.remaining() * 1000),
    }
    conf |= extra_conf or {}
    producer = Producer(conf)
    failures = []

    def delivered(err, msg, r):
        if err is not None:
            failures.append(f"record {r.i}: delivery failed: {err}")
            return
        r.acked_partition = msg.partition()
        r.acked_offset = msg.offset()

    dog.step = f"producing {len(records)} records ({compression})"
    for r in records:
        while True:
            try:
                producer.produce(
                    args.topic,
                    key=r.key,
                    value=r.value,
                    headers=r.headers,
                    partition=r.partition,
                    timestamp=r.timestamp or 0,  # 0: the producer's clock
                    on_delivery=lambda err, msg, r=r: delivered(err, msg, r),
                )
                break
            except BufferError:
                producer.poll(0.05)
    dog.step = f"waiting for acks of {len(records)} records"
    while producer.flush(min(1.0, dog.remaining())) > 0:
        if dog.expired():
            break
    if failures:
        common.fail(failures[:20] + [f"{len(failures)} of {len(records)} sends failed"])
    missing = [r.i for r in records if r.acked_offset is None]
    if missing:
        common.fail(f"no delivery report for {len(missing)} records, first {missing[:10]}")


def read_back(counts):
    """Reads every partition from its beginning by assign(): no subscribe, no commits.

    librdkafka refuses a consumer without group.id, so one is set; it is never joined (assign
    does not join) and nothing is committed.
    """
    consumer = Consumer(
        base_conf()
        | {
            "group.id": f"kelp-e2e-unjoined-{args.topic}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in range(common.PARTITIONS)])
    got = []
    at_end = [False] * common.PARTITIONS
    positions = [0] * common.PARTITIONS
    dog.step = f"reading back {sum(counts)} records"
    while not all(at_end[p] and positions[p] >= counts[p] for p in range(common.PARTITIONS)):
        if dog.expired():
            common.fail(f"read back stopped at offsets {positions}, expected {counts}")
        for m in consumer.consume(num_messages=1000, timeout=min(0.5, dog.remaining())):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end[m.partition()] = True
                    continue
                common.fail(f"consume error on partition {m.partition()}: {err}")
            ts_type, ts = m.timestamp()
            got.append(
                common.Got(
                    m.partition(),
                    m.offset(),
                    m.key(),
                    m.value(),
                    list(m.headers() or []),
                    ts,
                    TS_TYPES.get(ts_type, f"type {ts_type}"),
                )
            )
            positions[m.partition()] = m.offset() + 1
            at_end[m.partition()] = False
    dog.step = "checking watermarks"
    marks = []
    for p in range(common.PARTITIONS):
        lo, hi = consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=dog.remaining())
        marks.append((lo, hi))
    consumer.close()
    return got, marks


def produce_verify():
    if args.create:
        create_topic(admin_client())
    records = common.make_records(args.count, null_header_values=True)
    produce(records, args.compression)
    counts = common.expected_counts(records)
    got, marks = read_back(counts)
    dog.step = "comparing"
    errors = common.verify(records, got) + common.watermark_errors(marks, counts)
    if errors:
        common.fail(errors + [f"{len(errors)} differences in {len(records)} records"])
    common.ok(summary("produce-verify") | {"records": len(records), "per_partition": counts})


# ---- admin ------------------------------------------------------------------------------------


def topic_configs(admin):
    res = ConfigResource(ResourceType.TOPIC, args.topic)
    fs = admin.describe_configs([res], request_timeout=dog.remaining())
    return wait(fs[res], f"describe configs of {args.topic}")


def source_of(entry):
    src = entry.source
    return ConfigSource(src) if isinstance(src, int) else src


def check_config(admin, name, value, what):
    configs = topic_configs(admin)
    entry = configs.get(name)
    if entry is None:
        common.fail(f"{what}: {name} missing from the described configs ({len(configs)} entries)")
    if entry.value != value:
        common.fail(f"{what}: {name} = {entry.value!r}, expected {value!r}")
    if source_of(entry) != ConfigSource.DYNAMIC_TOPIC_CONFIG:
        common.fail(f"{what}: {name} has source {source_of(entry)}, expected DYNAMIC_TOPIC_CONFIG")


def admin_mode():
    admin = admin_client()

    create_topic(admin, config={"retention.ms": "3600000"})
    common.step_ok(f"create topic {args.topic} (3 partitions, retention.ms=3600000)")

    dog.step = "describe topic"
    eventually(dog.step, lambda: partition_count(admin), 3)
    common.step_ok("describe topic: 3 partitions")

    dog.step = "describe configs"
    check_config(admin, "retention.ms", "3600000", dog.step)
    common.step_ok("describe configs: retention.ms=3600000 (DYNAMIC_TOPIC_CONFIG)")

    dog.step = "incremental alter configs"
    res = ConfigResource(
        ResourceType.TOPIC,
        args.topic,
        incremental_configs=[
            ConfigEntry("max.message.bytes", "200000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    fs = admin.incremental_alter_configs([res], request_timeout=dog.remaining())
    wait(fs[res], dog.step)
    check_config(admin, "max.message.bytes", "200000", dog.step)
    # An incremental alter leaves the other topic configs alone.
    check_config(admin, "retention.ms", "3600000", dog.step + " (retention.ms kept)")
    common.step_ok("incremental alter configs: max.message.bytes=200000, retention.ms kept")

    dog.step = "create partitions"
    fs = admin.create_partitions([NewPartitions(args.topic, 5)], request_timeout=dog.remaining())
    wait(fs[args.topic], dog.step)
    eventually(dog.step + " (describe)", lambda: partition_count(admin), 5)
    common.step_ok("create partitions: 5 partitions")

    dog.step = "produce 10 records to partition 0"
    records = [
        common.Expected(i, 0, f"key-{i}".encode(), f"value-{i}".encode(), [("idx", str(i).encode())], None)
        for i in range(10)
    ]
    produce(records, args.compression)
    if [r.acked_offset for r in records] != list(range(10)):
        common.fail(f"{dog.step}: acked offsets {[r.acked_offset for r in records]}, expected 0..9")
    common.step_ok("produce 10 records to partition 0: offsets 0..9")

    dog.step = "delete records before offset 5"
    tp = TopicPartition(args.topic, 0, 5)
    fs = admin.delete_records([tp], request_timeout=dog.remaining())
    deleted = wait(next(iter(fs.values())), dog.step)
    if deleted.low_watermark != 5:
        common.fail(f"{dog.step}: low watermark {deleted.low_watermark}, expected 5")
    earliest = list_offset(admin, OffsetSpec.earliest())
    latest = list_offset(admin, OffsetSpec.latest())
    if (earliest, latest) != (5, 10):
        common.fail(f"{dog.step}: list offsets earliest/latest = {earliest}/{latest}, expected 5/10")
    common.step_ok("delete records: low watermark 5, earliest 5, latest 10")

    dog.step = "delete topic"
    fs = admin.delete_topics([args.topic], request_timeout=dog.remaining())
    wait(fs[args.topic], dog.step)
    eventually(dog.step + " (list topics)", lambda: topic_listed(admin), False)
    described = partition_count(admin)
    if not (isinstance(described, str) and "UNKNOWN_TOPIC" in described):
        common.fail(f"{dog.step}: describe after delete gave {described!r}, expected UNKNOWN_TOPIC_OR_PART")
    common.step_ok("delete topic: gone from list and describe")

    common.ok(summary("admin") | {"steps": 7})


def topic_listed(admin):
    try:
        return args.topic in admin.list_topics(timeout=min(5.0, dog.remaining())).topics
    except KafkaException as e:
        return f"error: {e.args[0] if e.args else e}"
    except Exception as e:
        return f"error: {type(e).__name__} {e}"


def list_offset(admin, spec):
    tp = TopicPartition(args.topic, 0)
    fs = admin.list_offsets({tp: spec}, request_timeout=dog.remaining())
    return wait(next(iter(fs.values())), f"list offsets ({spec})").offset


def summary(mode):
    return {
        "client": "confluent-kafka",
        "version": CK_VERSION,
        "librdkafka": libversion()[0],
        "mode": mode,
        "topic": args.topic,
        "compression": args.compression,
    }


# ---- produce and group ------------------------------------------------------------------------


def produce_mode():
    if args.create:
        create_topic(admin_client(), partitions=args.partitions)
    records = common.produce_records(args)
    produce(records, args.compression)
    common.produce_summary("confluent-kafka", CK_VERSION, args, records)


def group_mode():
    member = common.Member(args, dog)
    member.wait_start()

    # With --regex-topics, --topic is a regex (librdkafka's "^..." form) and a partition is
    # reported as 100 * (the topic's place in that list) + its number; a topic the regex should
    # not have matched ends the member with an error.
    regex_topics = args.regex_topics.split(",") if args.regex_topics else None

    def number(topic, partition):
        if regex_topics is None:
            return partition if topic == args.topic else None
        if topic not in regex_topics:
            common.fail(f"got {topic} [{partition}], which the regex {args.topic} does not match")
        return 100 * regex_topics.index(topic) + partition

    def topic_partition(n, offset):
        if regex_topics is None:
            return TopicPartition(args.topic, n, offset)
        return TopicPartition(regex_topics[n // 100], n % 100, offset)

    def tps(partitions):
        return [n for n in (number(tp.topic, tp.partition) for tp in partitions) if n is not None]

    conf = base_conf() | {
        "group.id": args.group,
        "client.id": f"kelp-e2e-confluent-{os.getpid()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
    }
    if args.group_protocol == "consumer":
        # KIP-848: the coordinator sets session and heartbeat times and assigns; librdkafka
        # refuses the classic settings with this protocol.
        conf["group.protocol"] = "consumer"
    else:
        conf |= {"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000}
    consumer = Consumer(conf)
    # Eager assignors: on_assign gets the whole new assignment (librdkafka assigns it after the
    # callback), on_revoke everything owned. Cooperative ones, and KIP-848's consumer protocol,
    # give the increments; the owned set is kept as additions and removals so both read right.
    # A regex subscription (a topic starting with ^, as librdkafka has it) follows topics as
    # they come and go.
    consumer.subscribe(
        [args.topic],
        on_assign=lambda c, ps: member.assigned(tps(ps)),
        on_revoke=lambda c, ps: member.revoked(tps(ps)),
        on_lost=lambda c, ps: member.lost(tps(ps)),
    )
    reason = None
    while reason is None:
        msgs = consumer.consume(num_messages=args.max_batch, timeout=0.2)
        recs = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                # librdkafka also reports a group error it recovers from by joining again: a
                # JoinGroup answered REBALANCE_IN_PROGRESS (what a parked JoinGroup gets when a
                # KIP-848 member turns the classic group into a consumer group, as in Kafka).
                recovers = err.code() == KafkaError.REBALANCE_IN_PROGRESS
                if err.fatal() or not (err.retriable() or recovers):
                    common.fail(f"consume error in group {args.group}: {err}")
                dog.note(str(err))
                continue
            recs.append((number(m.topic(), m.partition()), m.offset(), (m.key() or b"").decode()))
        offsets = member.batch(recs)
        if offsets:
            try:
                consumer.commit(offsets=[topic_partition(p, n) for p, n in offsets], asynchronous=False)
            except KafkaException as e:
                member.commit_failed(offsets, e.args[0] if e.args else e)
            member.pause()
        reason = member.stop_reason()
    dog.step = f"leaving group {args.group}"
    consumer.close()  # commits nothing more (auto commit is off): every batch was committed
    member.finish(
        "confluent-kafka", CK_VERSION, reason, librdkafka=libversion()[0], group_protocol=args.group_protocol
    )


# ---- keyless ----------------------------------------------------------------------------------


def send_and_flush(producer, records):
    """Sends (key, value) pairs to partition 0, flushes, and returns each one's delivery error
    (None when it was stored) in order."""
    results = ["no delivery report"] * len(records)

    def delivered(err, _msg, i):
        results[i] = err

    for i, (key, value) in enumerate(records):
        producer.produce(args.topic, key=key, value=value, partition=0, on_delivery=lambda e, m, i=i: delivered(e, m, i))
    while producer.flush(min(1.0, dog.remaining())) > 0:
        if dog.expired():
            common.fail(f"{dog.step}: no delivery report in time")
    return results


def keyless_mode():
    n = args.count
    before = [(f"key-{i}".encode(), f"keyed-{i}".encode()) for i in range(n)]
    after = [(f"key-{i}".encode(), f"keyed-{i}".encode()) for i in range(n, 2 * n)]
    conf = base_conf() | {
        "compression.type": COMPRESSION[args.compression],
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": int(dog.remaining() * 1000),
    }
    producer = Producer(conf)
    dog.step = f"producing {n} keyed records"
    errors = [e for e in send_and_flush(producer, before) if e is not None]
    if errors:
        common.fail(f"{dog.step}: {errors[:5]}")
    dog.step = "producing a record without a key"
    (err,) = send_and_flush(producer, [(None, b"keyless")])
    if err is None:
        common.fail("a record without a key was stored on a compacted topic")
    if err.code() != KafkaError.INVALID_RECORD:
        common.fail(f"a record without a key failed with {err}, expected INVALID_RECORD")
    refused = err.str()
    dog.step = f"producing {n} more keyed records (after the refusal)"
    errors = [e for e in send_and_flush(producer, after) if e is not None]
    if errors:
        common.fail(f"{dog.step}: {errors[:5]}")

    dog.step = "reading back"
    consumer = Consumer(
        base_conf()
        | {
            "group.id": f"kelp-e2e-unjoined-{args.topic}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.assign([TopicPartition(args.topic, 0, OFFSET_BEGINNING)])
    got = []
    at_end = False
    while not at_end or len(got) < 2 * n:
        if dog.expired():
            common.fail(f"read back stopped after {len(got)} records, expected {2 * n}")
        for m in consumer.consume(num_messages=1000, timeout=min(0.5, dog.remaining())):
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_end = True
                    continue
                common.fail(f"consume error: {m.error()}")
            got.append((m.key(), m.value()))
            at_end = False
    consumer.close()
    want = before + after
    if got != want:
        diffs = [f"record {j}: {g!r}, expected {w!r}" for j, (g, w) in enumerate(zip(got, want)) if g != w]
        common.fail(diffs[:20] + [f"read {len(got)} records, expected {len(want)} keyed records"])
    common.ok(summary("keyless") | {"keyed": len(want), "refused": refused})


if args.mode == "produce-verify":
    produce_verify()
elif args.mode == "keyless":
    keyless_mode()
elif args.mode == "produce":
    produce_mode()
elif args.mode == "group":
    group_mode()
else:
    admin_mode()
