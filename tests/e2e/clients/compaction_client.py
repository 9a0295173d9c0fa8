#!/usr/bin/env python3
"""kelp end-to-end client for log compaction (issue 18): confluent-kafka (librdkafka).

    python compaction_client.py --bootstrap 127.0.0.1:9092 --topic t --mode produce \
        --records 1000000 --keys 10000 --tombstones 1000 --value-bytes 100 \
        [--config cleanup.policy=compact --config segment.bytes=524288 ...] [--timeout 120]
    python compaction_client.py --bootstrap 127.0.0.1:9092 --topic t --mode read [--max-records N]

Modes:
  produce  creates the topic (one partition, the --config entries) with the AdminClient, then
           produces --records records in rounds over --keys keys: record i has key
           "k%05d" % (i % keys) and a value of --value-bytes bytes, i in 7 digits, a dash, then
           'x's, except that in the last round the first --tombstones keys get a tombstone (a
           null value), written first, before the last values of the other keys (record i of
           that round still goes to key i % keys). acks=all, no idempotence. Every
           delivery report must name partition 0 and offset i (nothing else wrote to the topic),
           so record i is stored at offset i. One JSON summary line.
  read     a fresh consumer (assign, no group membership, no commits) reads partition 0 from
           the beginning to the high watermark and prints one JSON line per record,
           [offset, key, value or null, timestamp], then the summary line
           {"summary": ..., "records": n, "high_watermark": h}. More than --max-records records
           is a failure (the log was not compacted).

The records are the ones CompactionClient.java and tests/tests/e2e_compaction/cleaning.rs
compute; the checks of what was read are in the test. Exit 0 with the summary last; exit 1
with a line starting with FAIL: on stderr.
"""

import argparse
import json
import os
import sys
import time

sys.dont_write_bytecode = True  # leave no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2e_common as common  # noqa: E402

p = argparse.ArgumentParser(description="kelp compaction client on confluent-kafka")
p.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
p.add_argument("--topic", required=True, metavar="NAME")
p.add_argument("--mode", required=True, choices=("produce", "read"))
p.add_argument("--records", type=int, default=1_000_000, metavar="N")
p.add_argument("--keys", type=int, default=10_000, metavar="K")
p.add_argument("--tombstones", type=int, default=1_000, metavar="T")
p.add_argument("--value-bytes", type=int, default=100, metavar="B")
p.add_argument("--config", action="append", default=[], metavar="NAME=VALUE", help="topic config (produce)")
p.add_argument("--max-records", type=int, default=100_000, metavar="N", help="read: fail beyond this many")
p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
args = p.parse_args()
if args.records % args.keys != 0 or not 0 <= args.tombstones <= args.keys or args.value_bytes < 8:
    p.error("--records must be a multiple of --keys, --tombstones at most --keys, --value-bytes at least 8")

dog = common.Watchdog(args.timeout)
dog.step = "importing confluent_kafka"
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka import __version__ as CK_VERSION  # noqa: E402
from confluent_kafka import libversion  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def key(k):
    return b"k%05d" % k


def value(i, size):
    """Record i's value: its index, zero-padded to 7 digits, a dash, then 'x' up to size bytes."""
    head = b"%07d-" % i
    return head + b"x" * (size - len(head))


def order(records, keys, tombstones):
    """(index, key number, is tombstone) in the order they are produced: rounds over the keys;
    in the last round the tombstones come first, so that the last values of the live keys
    follow them (and the tombstones end up in a closed segment, where the cleaner sees them)."""
    last_round = records - keys
    for i in range(last_round):
        yield i, i % keys, False
    for k in range(tombstones):
        yield last_round + k, k, True
    for k in range(tombstones, keys):
        yield last_round + k, k, False


def on_error(err):
    dog.note(str(err))
    if err.fatal():
        common.fail(f"fatal client error during {dog.step}: {err}")


def base_conf():
    return {"bootstrap.servers": args.bootstrap, "client.id": "kelp-e2e-compaction", "error_cb": on_error}


def create_topic():
    dog.step = f"create topic {args.topic}"
    config = dict(c.split("=", 1) for c in args.config)
    admin = AdminClient(base_conf())
    fs = admin.create_topics([NewTopic(args.topic, num_partitions=1, replication_factor=1, config=config)])
    try:
        fs[args.topic].result(timeout=dog.remaining())
    except KafkaException as e:
        common.fail(f"create topic {args.topic} {config}: {e.args[0] if e.args else e}")


def produce():
    create_topic()
    producer = Producer(
        base_conf()
        | {
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 5,
            # Small batches, so that the last round's tombstones and values are in batches
            # of their own and the segment boundaries fall between them.
            "batch.size": 64 * 1024,
            "queue.buffering.max.messages": 500_000,
            "message.timeout.ms": int(dog.remaining() * 1000),
        }
    )
    wrong = []
    acked = [0]

    def delivered(err, msg):
        if err is not None:
            wrong.append(f"delivery failed: {err}")
            return
        i = int(msg.value()[:7]) if msg.value() is not None else None
        acked[0] += 1
        if msg.partition() != 0 or (i is not None and msg.offset() != i):
            wrong.append(f"record {i} acknowledged at partition {msg.partition()} offset {msg.offset()}")

    started = time.monotonic()
    dog.step = f"producing {args.records} records over {args.keys} keys"
    tomb_offsets = {}
    for i, k, tomb in order(args.records, args.keys, args.tombstones):
        v = None if tomb else value(i, args.value_bytes)
        cb = delivered
        if tomb:
            # A tombstone's delivery report has no value to name it: check its offset here.
            def cb(err, msg, i=i):
                if err is None:
                    tomb_offsets[i] = msg.offset()
                delivered(err, msg)

        while True:
            try:
                producer.produce(args.topic, key=key(k), value=v, partition=0, on_delivery=cb)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    dog.step = "waiting for the last acks"
    while producer.flush(min(1.0, dog.remaining())) > 0:
        pass
    wrong += [f"tombstone {i} acknowledged at offset {o}" for i, o in tomb_offsets.items() if o != i]
    if wrong:
        common.fail(wrong[:20] + [f"{len(wrong)} of {args.records} records acknowledged wrongly"])
    if acked[0] != args.records:
        common.fail(f"{acked[0]} of {args.records} records acknowledged")
    seconds = time.monotonic() - started
    common.ok(
        {
            "summary": "produce",
            "client": f"confluent-kafka {CK_VERSION} / librdkafka {libversion()[0]}",
            "records": args.records,
            "seconds": round(seconds, 2),
            "records_per_s": round(args.records / seconds),
        }
    )


def read():
    consumer = Consumer(
        base_conf()
        | {
            # librdkafka wants a group.id; assign() never joins it and nothing is committed.
            "group.id": f"kelp-e2e-unjoined-{args.topic}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",
            "fetch.wait.max.ms": 100,
        }
    )
    tp = TopicPartition(args.topic, 0)
    dog.step = "reading the high watermark"
    _, high = consumer.get_watermark_offsets(tp, timeout=dog.remaining())
    consumer.assign([TopicPartition(args.topic, 0, OFFSET_BEGINNING)])
    out = sys.stdout
    n, position, at_end = 0, 0, False
    dog.step = f"reading partition 0 up to {high}"
    while not (at_end and position >= high):
        if dog.expired():
            common.fail(f"read stopped at offset {position}, high watermark {high}")
        for m in consumer.consume(num_messages=1000, timeout=min(0.5, dog.remaining())):
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end = True
                    continue
                common.fail(f"consume error: {err}")
            v = m.value()
            out.write(
                json.dumps([m.offset(), m.key().decode(), None if v is None else v.decode(), m.timestamp()[1]]) + "\n"
            )
            n += 1
            if n > args.max_records:
                common.fail(f"more than {args.max_records} records below {high}: the log is not compacted")
            position, at_end = m.offset() + 1, False
    consumer.close()
    common.ok({"summary": "read", "client": f"confluent-kafka {CK_VERSION}", "records": n, "high_watermark": high})


if args.mode == "produce":
    produce()
else:
    read()
