"""One Kafka client workload, the same for every server it is pointed at (confluent-kafka):
produce COUNT records of SIZE bytes to partition 0 of TOPIC (acks=all, linger 5 ms, no
idempotence, no compression), then consume them from offset 0 (and again with kcat, if present). Prints one JSON line with the
messages per second of each phase. The topic must exist.

  bench_kafka.py BOOTSTRAP TOPIC COUNT [SIZE]

BENCH_PIDS="name=PID,name=PID" adds each named process's CPU time (user + system, from /proc)
per record of each phase, in ns: `cpu_ns.<phase>.<name>` (and kcat's own as `cpu_ns.kcat.client`)."""
import json
import os
import resource
import shutil
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

boot, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
size = int(sys.argv[4]) if len(sys.argv) > 4 else 100
payload = b"x" * size
errors = []
pids = dict(kv.split("=") for kv in os.environ.get("BENCH_PIDS", "").split(",") if kv)
ticks = os.sysconf("SC_CLK_TCK")
cpu_ns = {}


def cpu_s():
    """Each named process's CPU seconds so far (utime + stime; children not counted)."""
    out = {}
    for name, pid in pids.items():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        out[name] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def phase(name, before, records):
    after = cpu_s()
    if records:
        cpu_ns[name] = {k: round((after[k] - before[k]) * 1e9 / records) for k in after}


def delivered(err, _msg):
    if err is not None:
        errors.append(str(err))


p = Producer({"bootstrap.servers": boot, "acks": "all", "linger.ms": 5, "enable.idempotence": False,
              "batch.size": 1 << 20, "queue.buffering.max.messages": 1_000_000, "compression.type": "none"})
cpu0 = cpu_s()
start = time.time()
for _ in range(count):
    while True:
        try:
            p.produce(topic, payload, partition=0, on_delivery=delivered)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
left = p.flush(300)
produce_s = time.time() - start
phase("produce", cpu0, count)

c = Consumer({"bootstrap.servers": boot, "group.id": "bench-%f" % time.time(), "enable.auto.commit": False,
              "fetch.max.bytes": 50 << 20, "max.partition.fetch.bytes": 10 << 20})
c.assign([TopicPartition(topic, 0, 0)])
cpu0 = cpu_s()
got, start, deadline = 0, time.time(), time.time() + 300
while got < count and time.time() < deadline:
    for m in c.consume(10000, 1.0):
        if not m.error():
            got += 1
consume_s = time.time() - start
phase("consume", cpu0, got)
c.close()
result = {"count": count, "size": size, "unacked": left, "errors": len(errors), "consumed": got,
          "produce_msgs": round(count / produce_s), "consume_msgs": round(got / consume_s)}
# The Python consumer tops out near 130k msg/s on these machines; kcat (librdkafka in C, same
# library) reads the same records again to show what the server gives a faster reader.
if shutil.which("kcat"):
    cpu0 = cpu_s()
    start = time.time()
    out = subprocess.run(["kcat", "-C", "-b", boot, "-t", topic, "-p", "0", "-o", "beginning", "-c", str(count),
                          "-q", "-f", "%o\\n", "-X", "fetch.max.bytes=52428800"],
                         capture_output=True, timeout=300)
    kcat_s = time.time() - start
    n = out.stdout.count(b"\n")
    phase("kcat", cpu0, n)
    if n and "kcat" in cpu_ns:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_ns["kcat"]["client"] = round((ru.ru_utime + ru.ru_stime) * 1e9 / n)
    result["kcat_consumed"] = n
    result["kcat_consume_msgs"] = round(n / kcat_s)
if cpu_ns:
    result["cpu_ns"] = cpu_ns
print(json.dumps(result))
