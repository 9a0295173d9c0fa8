"""The log cleaner benchmark's client side (scripts/bench-cleaner.sh), on confluent-kafka.

  bench_cleaner.py BOOTSTRAP create TOPIC PARTITIONS [NAME=VALUE ...]
      creates TOPIC with those topic configs
  bench_cleaner.py BOOTSTRAP fill TOPIC PARTITIONS RECORDS KEYS VALUE_BYTES
      produces RECORDS records, record i with key "k<i % KEYS>" to partition i % PARTITIONS
      (so every key lives in one partition), acks=all, linger 5 ms, no idempotence, no
      compression; prints one JSON line: records, bytes of values, seconds, records/s
"""
import json
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

boot, op, topic, partitions = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

if op == "create":
    config = dict(kv.split("=", 1) for kv in sys.argv[5:])
    admin = AdminClient({"bootstrap.servers": boot})  # kept: its futures fail once it is destroyed
    fs = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config)], operation_timeout=30
    )
    for f in fs.values():
        f.result(timeout=60)
    sys.exit(0)

records, keys, size = (int(a) for a in sys.argv[5:8])
errors = []


def delivered(err, _msg):
    if err is not None:
        errors.append(str(err))


p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 5, "enable.idempotence": False,
              "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000, "compression.type": "none"})
payload = b"v" * size
start = time.time()
for i in range(records):
    k = i % keys
    while True:
        try:
            p.produce(topic, payload, b"k%d" % k, partition=k % partitions, on_delivery=delivered)
            break
        except BufferError:
            p.poll(0.01)
    if i % 1000 == 0:
        p.poll(0)
left = p.flush(600)
seconds = time.time() - start
if left or errors:
    sys.exit(f"fill: {left} records unacknowledged, {len(errors)} failed: {errors[:3]}")
print(json.dumps({"records": records, "value_bytes": records * size, "seconds": round(seconds, 1),
                  "records_per_s": round(records / seconds)}))
