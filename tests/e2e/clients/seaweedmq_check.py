"""Checks for kelp on SeaweedMQ, driven by tests/tests/e2e_seaweedmq.rs (confluent-kafka).

  seaweedmq_check.py BOOTSTRAP TOPIC produce   1000 records with keys, headers and producer
                                               timestamps; group GROUP commits at 500
  seaweedmq_check.py BOOTSTRAP TOPIC verify    after restarts: the group resumes at 500, a
                                               fresh reader sees all 1000 as written, new
                                               records continue at 1000
  seaweedmq_check.py BOOTSTRAP TOPIC acks=A N  N records under acks=A while the connection
                                               stays open; all read back once, in order
  seaweedmq_check.py BOOTSTRAP TOPIC midproduce N MARKER
                                               N records, slowly, by an idempotent producer;
                                               MARKER is created once a tenth are acknowledged
                                               (the test then breaks SeaweedMQ); every record is
                                               acknowledged and stored exactly once, in order,
                                               at the offset it was acknowledged with
  seaweedmq_check.py BOOTSTRAP TOPIC faults RATE PROGRESS STOP
                                               an idempotent producer at acks=all sends RATE
                                               records a second until the file STOP exists,
                                               rewriting PROGRESS ("acked produced errors") every
                                               0.1 s so that the test can break SeaweedFS while
                                               records are in flight and watch acks resume; then
                                               the same checks as midproduce

Prints one JSON object; exits non-zero on the first failed check."""
import json
import os
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

BOOT, TOPIC, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
GROUP = "resume-group"
N = 1000
T0 = 1_700_000_000_000


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def record(i):
    """The i-th record: key (null every 50th), value (empty every 77th), headers, timestamp."""
    key = None if i % 50 == 0 else b"key-%d" % (i % 13)
    value = b"" if i % 77 == 0 else b"value-%d" % i
    headers = [("seq", str(i).encode()), ("dup", b"a"), ("dup", b"b"), ("nul", None)]
    return key, value, headers, T0 + 1000 * i


def create(partitions=1):
    admin = AdminClient({"bootstrap.servers": BOOT})
    for _, f in admin.create_topics([NewTopic(TOPIC, partitions, 1)]).items():
        f.result(30)


def produce(values, conf=None):
    p = Producer({"bootstrap.servers": BOOT, "linger.ms": 5, "enable.idempotence": True, **(conf or {})})
    offsets, errors = {}, []

    def done(err, msg, i):
        if err:
            errors.append(str(err))
        else:
            offsets[i] = msg.offset()

    for i in values:
        key, value, headers, ts = record(i)
        while True:
            try:
                p.produce(TOPIC, key=key, value=value, headers=headers, timestamp=ts, partition=0,
                          on_delivery=lambda err, msg, i=i: done(err, msg, i))
                break
            except BufferError:
                p.poll(0.1)
    if p.flush(60) != 0:
        fail("records still unacknowledged after 60 s")
    if errors:
        fail("delivery errors: %s" % errors[:5])
    return offsets


def read_all(count, start=0):
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "reader-%f" % time.time(), "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, 0, start)])
    got, deadline = [], time.time() + 120
    while len(got) < count and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                fail("consume error: %s" % m.error())
            got.append(m)
    c.close()
    return got


def check_record(m, i):
    key, value, headers, ts = record(i)
    if m.offset() != i:
        fail("record %d at offset %d" % (i, m.offset()))
    if m.key() != key or m.value() != value:
        fail("record %d: key %r value %r" % (i, m.key(), m.value()))
    if m.headers() != headers:
        fail("record %d: headers %r" % (i, m.headers()))
    if m.timestamp() != (1, ts):
        fail("record %d: timestamp %r" % (i, m.timestamp()))


def read_back_once(count, acked):
    """Records b"mid-0".. b"mid-<count-1>" were each acknowledged at acked[i]: checks that the
    offsets increase with the records and that the partition holds each record exactly once,
    in order, at that offset, and nothing else. Returns the offsets."""
    # Offsets increase with the records (one partition, an idempotent producer keeps order).
    # They may skip some: SeaweedMQ can use up an offset without storing anything there (see
    # docs/SEAWEEDMQ.md), as Kafka's own logs have gaps after compaction.
    offsets = [acked.get(i) for i in range(count)]
    if None in offsets or any(b <= a for a, b in zip(offsets, offsets[1:])):
        fail("acknowledged offsets do not increase with the records: %s" % offsets[:20])
    got = read_all(count)
    values = [m.value() for m in got]
    if values != [b"mid-%d" % i for i in range(count)] or [m.offset() for m in got] != offsets:
        first = next((i for i, (m, o) in enumerate(zip(got, offsets))
                      if m.value() != b"mid-%d" % i or m.offset() != o), min(len(got), count))
        seen = [(m.offset(), m.value().decode()) for m in got[max(first - 2, 0):first + 3]]
        fail("read back %d records, want %d once each, in order, at their acknowledged offsets; first "
             "difference at record %d (acknowledged at %s), read around it: %s"
             % (len(got), count, first, offsets[first] if first < count else None, seen))
    c = Consumer({"bootstrap.servers": BOOT, "group.id": "hwm-%f" % time.time()})
    low, high = c.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=30)
    c.close()
    if (low, high) != (0, offsets[-1] + 1):
        fail("the partition holds offsets %d..%d, want 0..%d: a record was written twice" % (low, high, offsets[-1] + 1))
    return offsets


if MODE == "produce":
    create()
    offsets = produce(range(N))
    if sorted(offsets.items()) != [(i, i) for i in range(N)]:
        fail("acknowledged offsets are not 0..999 in order")
    c = Consumer({"bootstrap.servers": BOOT, "group.id": GROUP, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    c.subscribe([TOPIC])
    seen, deadline = [], time.time() + 60
    while len(seen) < 500 and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            seen.append(m)
    if len(seen) < 500:
        fail("group read only %d records" % len(seen))
    c.commit(offsets=[TopicPartition(TOPIC, 0, 500)], asynchronous=False)
    c.close()
    print(json.dumps({"ok": True, "produced": N, "committed": 500}))
elif MODE == "verify":
    c = Consumer({"bootstrap.servers": BOOT, "group.id": GROUP, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    committed = c.committed([TopicPartition(TOPIC, 0)], timeout=30)[0].offset
    c.subscribe([TOPIC])
    first, deadline = None, time.time() + 60
    while first is None and time.time() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            first = m
    c.close()
    if committed != 500 or first is None or first.offset() != 500:
        fail("group resumed at %r (committed %r), not 500" % (first and first.offset(), committed))
    check_record(first, 500)
    got = read_all(N)
    if len(got) != N:
        fail("a fresh reader saw %d of %d records" % (len(got), N))
    for i, m in enumerate(got):
        check_record(m, i)
    offsets = produce(range(N, N + 10))
    if sorted(offsets.values()) != list(range(N, N + 10)):
        fail("new records at %r, not 1000..1009" % sorted(offsets.values()))
    print(json.dumps({"ok": True, "resumed_at": 500, "read": len(got), "new_offsets": [N, N + 9]}))
elif MODE.startswith("acks="):
    acks, count = MODE[5:], int(sys.argv[4])
    create()
    # acks=-1 is answered once SeaweedMQ has flushed the records to its filer (about a second),
    # and an idempotent librdkafka producer keeps one request per partition in flight: batches
    # of 500 would take 100 s for 50000 records, so acks=-1 gets batches of 5000.
    conf = {"acks": acks, "enable.idempotence": acks == "all" or acks == "-1", "linger.ms": 2,
            "batch.num.messages": 5000 if acks == "-1" else 500, "queue.buffering.max.messages": 200000}
    if acks != "-1":
        conf["enable.idempotence"] = False
    started = time.time()
    produce(range(count), conf)
    got = read_all(count)
    values = [m.value() for m in got]
    want = [record(i)[1] for i in range(count)]
    if values != want or [m.offset() for m in got] != list(range(count)):
        fail("acks=%s: read back %d records, want %d in order at offsets 0.." % (acks, len(got), count))
    print(json.dumps({"ok": True, "acks": acks, "records": count, "seconds": round(time.time() - started, 2)}))
elif MODE == "midproduce":
    count, marker = int(sys.argv[4]), sys.argv[5]
    create()
    p = Producer({"bootstrap.servers": BOOT, "enable.idempotence": True, "linger.ms": 5,
                  "delivery.timeout.ms": 600000, "request.timeout.ms": 15000})
    acked, errors = {}, []

    def done(err, msg, i):
        if err:
            errors.append(str(err))
        else:
            acked[i] = msg.offset()

    started = time.time()
    for i in range(count):
        while True:
            try:
                p.produce(TOPIC, value=b"mid-%d" % i, partition=0,
                          on_delivery=lambda err, msg, i=i: done(err, msg, i))
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if len(acked) >= count // 10 and not os.path.exists(marker):
            open(marker, "w").close()
        time.sleep(0.001)
    if p.flush(600) != 0:
        fail("records still unacknowledged after 600 s")
    if errors:
        fail("delivery errors: %s" % errors[:5])
    offsets = read_back_once(count, acked)
    print(json.dumps({"ok": True, "records": count, "unused_offsets": offsets[-1] + 1 - count,
                      "seconds": round(time.time() - started, 2)}))
elif MODE == "faults":
    rate, progress, stop = float(sys.argv[4]), sys.argv[5], sys.argv[6]
    create()
    fatal = []

    def on_error(err):
        if err.fatal():
            fatal.append(str(err))

    # Kafka's defaults for an idempotent producer, spelled out: acks=all, 5 requests in flight.
    # Deliveries may wait for a whole outage (the test restarts SeaweedFS five times).
    p = Producer({"bootstrap.servers": BOOT, "enable.idempotence": True, "acks": "all",
                  "max.in.flight.requests.per.connection": 5, "linger.ms": 5,
                  "delivery.timeout.ms": 900000, "request.timeout.ms": 15000, "error_cb": on_error})
    acked, sent_at, latencies, ack_times, errors = {}, {}, [], [], []

    def done(err, msg, i):
        now = time.time()
        if err:
            errors.append("record %d: %s" % (i, err))
            return
        acked[i] = msg.offset()
        latencies.append(now - sent_at.pop(i))
        ack_times.append(now)

    def report(produced):
        tmp = progress + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d %d %d\n" % (len(acked), produced, len(errors)))
        os.replace(tmp, progress)

    started, count, reported = time.time(), 0, 0.0
    while not os.path.exists(stop):
        if time.time() - started > 1200:
            fail("no stop file after 1200 s")
        due = int((time.time() - started) * rate)
        while count < due:
            sent_at[count] = time.time()
            try:
                p.produce(TOPIC, value=b"mid-%d" % count, partition=0,
                          on_delivery=lambda err, msg, i=count: done(err, msg, i))
            except BufferError:
                break
            count += 1
        p.poll(0.01)
        if errors or fatal:
            fail("delivery errors: %s; fatal producer errors: %s" % (errors[:5], fatal[:5]))
        if time.time() - reported >= 0.1:
            report(count)
            reported = time.time()
    report(count)
    if p.flush(600) != 0:
        fail("records still unacknowledged 600 s after the last was produced")
    if errors or fatal:
        fail("delivery errors: %s; fatal producer errors: %s" % (errors[:5], fatal[:5]))
    offsets = read_back_once(count, acked)
    latencies.sort()
    gaps = sorted(b - a for a, b in zip(ack_times, ack_times[1:]))
    print(json.dumps({"ok": True, "records": count, "unused_offsets": offsets[-1] + 1 - count,
                      "seconds": round(time.time() - started, 2),
                      "ack_latency_s": {"p50": round(latencies[len(latencies) // 2], 3),
                                        "p99": round(latencies[len(latencies) * 99 // 100], 3),
                                        "max": round(latencies[-1], 3)},
                      "longest_ack_gaps_s": [round(g, 2) for g in gaps[-5:]]}))
else:
    fail("unknown mode " + MODE)
