"""Produce throughput of schema-aware topics against a topic without a schema (confluent-kafka).

  bench_schema_topics.py BOOTSTRAP REGISTRY_URL PREFIX COUNT [ROUNDS]

Registers an Avro schema (an order: longs, strings, a nullable union, a nested record, an array,
an enum, a timestamp) through the registry and frames 1,000 distinct records with Confluent's
AvroSerializer once, up front. Then, ROUNDS times (default 3), produces COUNT of those framed
records to each of two topics, one after the other: PREFIX-plain (no configs) and PREFIX-typed
(`confluent.value.schema.validation=true`, `kelp.value.schema.validation.mode=payload`: every
value's id checked and its payload decoded; on SeaweedMQ the records are also kept typed).
acks=all, linger 5 ms, no compression, no idempotence. Prints one JSON line with each round's
messages per second of each topic and the typed/plain ratio.

BENCH_PIDS="name=PID,..." adds each named process's CPU time (user + system, from /proc) per
record of each phase, in ns: `cpu_ns.<topic kind>.<name>` in each round.
"""
import json
import os
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

boot, url, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 3
plain, typed = f"{prefix}-plain", f"{prefix}-typed"

ORDER = {
    "type": "record", "name": "BenchOrder", "namespace": "kelp.bench",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "customer", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "ship", "type": {"type": "record", "name": "Ship", "fields": [
            {"name": "city", "type": "string"}, {"name": "zip", "type": "int"}]}},
        {"name": "items", "type": {"type": "array", "items": "string"}},
        {"name": "status", "type": {"type": "enum", "name": "BenchStatus", "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "total", "type": "double"},
        {"name": "placed", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ],
}

admin = AdminClient({"bootstrap.servers": boot})
new = [NewTopic(plain, num_partitions=1, replication_factor=1),
       NewTopic(typed, num_partitions=1, replication_factor=1, config={
           "confluent.value.schema.validation": "true", "kelp.value.schema.validation.mode": "payload"})]
for t, f in admin.create_topics(new, operation_timeout=30).items():
    f.result()
ser = AvroSerializer(SchemaRegistryClient({"url": url}), json.dumps(ORDER))
values = [ser({
    "id": i, "customer": f"customer {i % 97}", "note": None if i % 3 else f"note {i}",
    "ship": {"city": f"city {i % 13}", "zip": 1000 + i % 9000}, "items": [f"sku-{j}" for j in range(i % 5)],
    "status": ["NEW", "PAID", "SHIPPED"][i % 3], "total": i * 1.25, "placed": 1_700_000_000_000 + i,
}, SerializationContext(typed, MessageField.VALUE)) for i in range(1000)]
errors = []
pids = dict(kv.split("=") for kv in os.environ.get("BENCH_PIDS", "").split(",") if kv)
ticks = os.sysconf("SC_CLK_TCK")


def cpu_s():
    """Each named process's CPU seconds so far (utime + stime)."""
    out = {}
    for name, pid in pids.items():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def report(err, _msg):
    if err is not None:
        errors.append(str(err))


def run(topic):
    p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 5, "enable.idempotence": False,
                  "queue.buffering.max.messages": 1_000_000, "batch.num.messages": 10000})
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                p.produce(topic, value=values[i % 1000], on_delivery=report)
                break
            except BufferError:
                p.poll(0.01)
        if i % 10000 == 0:
            p.poll(0)
    if p.flush(300) != 0:
        errors.append(f"{topic}: records still in flight")
    return count / (time.perf_counter() - start)


out = {"count": count, "value_bytes": sum(map(len, values)) // len(values), "rounds": []}
for _ in range(rounds):
    r = {"cpu_ns": {}}
    for kind, topic in (("plain", plain), ("typed", typed)):
        before = cpu_s()
        r[kind] = run(topic)
        after = cpu_s()
        r["cpu_ns"][kind] = {n: round((after[n] - before[n]) * 1e9 / count) for n in pids}
    r["ratio"] = r["typed"] / r["plain"]
    out["rounds"].append(r)
out["errors"] = errors[:5]
print(json.dumps(out))
