#!/usr/bin/env python3
"""Produce-to-consume latency for a consumer that follows the end of a partition.

    tail_latency.py BOOTSTRAP TOPIC COUNT

Creates TOPIC (one partition), joins a consumer group and waits for its assignment, then
produces COUNT records one at a time, 50 ms apart (each is flushed: acknowledged before the
next), each carrying its send time. The consumer reports, over all records, the time from
send to receipt (p50, p99, max) and the produce acknowledgement time. Needs confluent-kafka
(the venv of scripts/install-clients.sh). Used for the figures in docs/SEAWEEDMQ.md.
"""
import sys
import threading
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def pct(values, q):
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


def main():
    addr, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": addr})
    for f in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(30)
    consumer = Consumer({"bootstrap.servers": addr, "group.id": "tail-" + topic,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 500})
    assigned = []
    consumer.subscribe([topic], on_assign=lambda _c, parts: assigned.extend(parts))
    while not assigned:
        consumer.poll(0.1)
    producer = Producer({"bootstrap.servers": addr, "linger.ms": 0})
    acks = []

    def produce():
        for _ in range(count):
            sent = time.time()
            producer.produce(topic, value=repr(sent).encode())
            producer.flush()
            acks.append(time.time() - sent)
            time.sleep(0.05)

    sender = threading.Thread(target=produce)
    sender.start()
    latency = []
    deadline = time.time() + count * 0.05 + 60
    while len(latency) < count and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None:
            continue
        if m.error():
            print("consumer error:", m.error(), file=sys.stderr)
            continue
        latency.append(time.time() - float(m.value()))
    sender.join()
    consumer.close()
    if not latency:
        sys.exit("no record arrived")
    latency.sort()
    acks.sort()
    print(f"received {len(latency)}/{count}")
    print(f"produce to consume, ms: p50 {pct(latency, 0.5):.1f} p99 {pct(latency, 0.99):.1f} max {latency[-1] * 1000:.1f}")
    print(f"produce acknowledgement, ms: p50 {pct(acks, 0.5):.1f} p99 {pct(acks, 0.99):.1f} max {acks[-1] * 1000:.1f}")
    if len(latency) < count:
        sys.exit(1)


if __name__ == "__main__":
    main()
