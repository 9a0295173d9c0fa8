#!/usr/bin/env python3
"""kelp end-to-end client: kafka-python (pure Python) against a running broker.

    python kafka_python_client.py --bootstrap 127.0.0.1:9092 --topic t --mode produce-verify \
        [--compression gzip] [--count 1000] [--create] [--timeout 60]

The same program runs under kafka-python 2.3 and 3.0: the venv's python chooses which
(scripts/install-clients.sh makes venv-kp2 and venv-kp3). 3.0 makes its producer idempotent by
default, 2.3 does not; both are left at their defaults.

Mode produce-verify: produce N keyed records with headers and explicit timestamps to partitions
i % 3, wait for every ack, read everything back with assign + seek_to_beginning (no group) and
compare record by record with what was acked. kafka-python cannot send a null header value
(its send() wants bytes), so those records carry an empty header value instead.

Mode produce: N records key "k{i}", value "v{i}" to partition i % P (--first, --partitions).

Mode group: one member of --group (e2e_common.py describes the events it prints): subscribe with
a rebalance listener, no auto commit, commit() (the positions of what poll returned) after each
poll batch, kafka-python's default assignors (range, roundrobin: eager), until --stop-file or
--idle-exit.

Security flags (e2e_common.py) map to security_protocol, sasl_mechanism, sasl_plain_username,
sasl_plain_password, ssl_cafile, ssl_certfile and ssl_keyfile.

Exit 0 with a one-line JSON summary when every check passed; exit 1 with what differed.
"""

import logging
import os
import sys

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2e_common as common  # noqa: E402

args = common.parse_args(
    "kelp end-to-end client on kafka-python", ("produce-verify", "produce", "group"), has_admin=True
)
dog = common.Watchdog(args.timeout)

dog.step = "importing kafka"
import kafka  # noqa: E402
from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import KafkaAdminClient, NewTopic  # noqa: E402

V3 = not kafka.__version__.startswith("2.")
COMPRESSION = {"none": None, "gzip": "gzip", "snappy": "snappy", "lz4": "lz4", "zstd": "zstd"}
TS_TYPES = {0: common.CREATE_TIME, 1: "LogAppendTime"}


class KeepLogs(logging.Handler):
    """kafka-python's warnings and errors go to the failure report."""

    def emit(self, record):
        dog.note(f"{record.levelname} {record.name}: {record.getMessage()}")


handler = KeepLogs(level=logging.WARNING)
logging.getLogger("kafka").addHandler(handler)
logging.getLogger("kafka").setLevel(logging.WARNING)
logging.getLogger("kafka").propagate = False


def ms_left():
    return int(dog.remaining() * 1000)


def security_conf():
    """kafka-python's names for the shared security flags (e2e_common.py); none for PLAINTEXT.

    2.3 and 3.0 take the same keys. Hostname checking stays on: the test certificates name
    127.0.0.1 and localhost.
    """
    if args.security_protocol == "PLAINTEXT":
        return {}
    conf = {"security_protocol": args.security_protocol}
    if common.uses_sasl(args):
        conf |= {
            "sasl_mechanism": args.sasl_mechanism,
            "sasl_plain_username": args.sasl_username,
            "sasl_plain_password": args.sasl_password,
        }
    if common.uses_tls(args):
        conf["ssl_check_hostname"] = True
        for flag, key in (("ssl_ca", "ssl_cafile"), ("ssl_cert", "ssl_certfile"), ("ssl_key", "ssl_keyfile")):
            if getattr(args, flag) is not None:
                conf[key] = getattr(args, flag)
    return conf


def common_conf():
    return {
        "bootstrap_servers": [args.bootstrap],
        "client_id": f"kelp-e2e-kafka-python-{kafka.__version__}",
    } | security_conf()


def guarded(what, fn):
    """fn(), or a failure naming the step and the library's exception."""
    try:
        return fn()
    except Exception as e:
        common.fail(f"{what}: {type(e).__name__}: {e}")


def create_topic(partitions=common.PARTITIONS):
    dog.step = f"create topic {args.topic}"
    admin = guarded(dog.step, lambda: KafkaAdminClient(request_timeout_ms=ms_left(), **common_conf()))
    if V3:
        spec = {args.topic: {"num_partitions": partitions, "replication_factor": 1}}
    else:
        spec = [NewTopic(args.topic, num_partitions=partitions, replication_factor=1)]
    guarded(dog.step, lambda: admin.create_topics(spec, timeout_ms=ms_left()))
    admin.close()


def produce(records):
    dog.step = "connecting the producer"
    producer = guarded(
        dog.step,
        lambda: KafkaProducer(
            compression_type=COMPRESSION[args.compression],
            acks="all",
            linger_ms=5,
            max_block_ms=ms_left(),
            request_timeout_ms=min(30000, ms_left()),
            **common_conf(),
        ),
    )
    dog.step = f"producing {len(records)} records ({args.compression})"
    futures = [
        guarded(
            f"send record {r.i}",
            lambda r=r: producer.send(
                args.topic,
                key=r.key,
                value=r.value,
                headers=r.headers,
                partition=r.partition,
                timestamp_ms=r.timestamp,
            ),
        )
        for r in records
    ]
    dog.step = f"waiting for acks of {len(records)} records"
    guarded(dog.step, lambda: producer.flush(timeout=dog.remaining()))
    failures = []
    for r, f in zip(records, futures):
        try:
            md = f.get(timeout=dog.remaining())
        except Exception as e:
            failures.append(f"record {r.i}: send failed: {type(e).__name__}: {e}")
            continue
        r.acked_partition = md.partition
        r.acked_offset = md.offset
    producer.close(timeout=dog.remaining())
    if failures:
        common.fail(failures[:20] + [f"{len(failures)} of {len(records)} sends failed"])


def read_back(counts):
    dog.step = "connecting the consumer"
    consumer = guarded(
        dog.step,
        lambda: KafkaConsumer(
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            request_timeout_ms=min(30000, ms_left()),
            **common_conf(),
        ),
    )
    tps = [TopicPartition(args.topic, p) for p in range(common.PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = []
    positions = [0] * common.PARTITIONS
    dog.step = f"reading back {sum(counts)} records"
    while any(positions[p] < counts[p] for p in range(common.PARTITIONS)):
        if dog.expired():
            common.fail(f"read back stopped at offsets {positions}, expected {counts}")
        batch = guarded(dog.step, lambda: consumer.poll(timeout_ms=min(500, ms_left()), max_records=1000))
        for tp, msgs in batch.items():
            for m in msgs:
                got.append(
                    common.Got(
                        tp.partition,
                        m.offset,
                        m.key,
                        m.value,
                        list(m.headers or []),
                        m.timestamp,
                        TS_TYPES.get(m.timestamp_type, f"type {m.timestamp_type}"),
                    )
                )
                positions[tp.partition] = m.offset + 1
    dog.step = "checking watermarks"
    begin = guarded(dog.step, lambda: consumer.beginning_offsets(tps))
    end = guarded(dog.step, lambda: consumer.end_offsets(tps))
    consumer.close()
    return got, [(begin[tp], end[tp]) for tp in tps]


def produce_verify():
    if args.create:
        create_topic()
    records = common.make_records(args.count, null_header_values=False)
    produce(records)
    counts = common.expected_counts(records)
    got, marks = read_back(counts)
    dog.step = "comparing"
    errors = common.verify(records, got) + common.watermark_errors(marks, counts)
    if errors:
        common.fail(errors + [f"{len(errors)} differences in {len(records)} records"])
    common.ok(
        {
            "client": "kafka-python",
            "version": kafka.__version__,
            "mode": "produce-verify",
            "topic": args.topic,
            "compression": args.compression,
            "records": len(records),
            "per_partition": counts,
        }
    )


def produce_mode():
    if args.create:
        create_topic(args.partitions)
    records = common.produce_records(args)
    produce(records)
    common.produce_summary("kafka-python", kafka.__version__, args, records)


def group_mode():
    if args.group_protocol != "classic":
        common.fail("kafka-python speaks only the classic group protocol")
    if args.regex_topics:
        common.fail("kafka-python group mode takes one topic, not a regex")
    member = common.Member(args, dog)
    member.wait_start()

    def parts(tps):
        return [tp.partition for tp in tps if tp.topic == args.topic]

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            member.revoked(parts(revoked))

        def on_partitions_assigned(self, assigned):
            member.assigned(parts(assigned))

    consumer = guarded(
        dog.step,
        lambda: KafkaConsumer(
            group_id=args.group,
            client_id=f"kelp-e2e-kafka-python-{kafka.__version__}-{os.getpid()}",
            bootstrap_servers=[args.bootstrap],
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            max_poll_records=args.max_batch,
            request_timeout_ms=30000,
            **security_conf(),
        ),
    )
    consumer.subscribe([args.topic], listener=Listener())
    reason = None
    while reason is None:
        batch = guarded(dog.step, lambda: consumer.poll(timeout_ms=200, max_records=args.max_batch))
        recs = [
            (tp.partition, m.offset, (m.key or b"").decode())
            for tp, msgs in batch.items()
            for m in msgs
            if tp.topic == args.topic
        ]
        offsets = member.batch(recs)
        if offsets:
            try:
                consumer.commit()  # the positions after this batch, synchronously
            except Exception as e:  # CommitFailedError, RebalanceInProgressError, ...
                member.commit_failed(offsets, f"{type(e).__name__}: {e}")
            member.pause()
        reason = member.stop_reason()
    dog.step = f"leaving group {args.group}"
    consumer.close(autocommit=False)  # every batch was committed; close() leaves the group
    member.finish("kafka-python", kafka.__version__, reason)


if args.mode == "produce-verify":
    produce_verify()
elif args.mode == "produce":
    produce_mode()
else:
    group_mode()
