"""Produce load for scripts/bench-acks-seaweedmq.sh (confluent-kafka): PROCS producer processes
started together, one connection each, producer i writing round-robin to its own PARTS
partitions of TOPIC (i*PARTS to (i+1)*PARTS-1; the topic must have PROCS*PARTS). Records of
SIZE bytes (default 100), linger 5 ms, no compression,
max.in.flight.requests.per.connection=5; ACKS is all (with idempotence on, Kafka's default), 1
(without: Kafka allows it only with acks=all) or all-noidem (acks=all, idempotence off: what
idempotence alone costs). Latency is librdkafka's own per-record figure (Message.latency(): from
produce() to the acknowledgement), so at full speed it includes the time a record waits in the
client's queue (queue.buffering.max.messages, 100,000 by default).

Why PARTS: librdkafka's idempotent producer sends a partition's next ProduceRequest only while
fewer than 5 *messages* of that partition are in flight (rdkafka_broker.c compares its
in-flight message count with RD_KAFKA_IDEMP_MAX_INFLIGHT, 5), so with batches of more than 5
records it keeps one request in flight per partition, and its 5 requests in flight per
connection need 5 partitions. Without idempotence it pipelines 5 on one partition.

  bench_acks.py BOOTSTRAP TOPIC ACKS PROCS PARTS SECONDS [RATE [SIZE]]

Each producer first sends one record and waits for it (so that its connection, metadata and,
with idempotence, its producer id are in place), then all start together and produce for
SECONDS. RATE: records a second per producer, paced; 0 (the default): as fast as the producer
goes (librdkafka's queue, full, holds it back). Prints one JSON line: records a second over the
whole run (from the common start to the last acknowledgement), latency percentiles in ms, and
delivery errors."""
import json
import multiprocessing as mp
import sys
import time
from array import array

from confluent_kafka import Producer


def worker(i, boot, topic, acks, parts, seconds, rate, size, barrier, out):
    p = Producer({"bootstrap.servers": boot, "acks": acks.split("-")[0], "enable.idempotence": acks == "all",
                  "max.in.flight.requests.per.connection": 5, "linger.ms": 5, "compression.type": "none",
                  "request.timeout.ms": 30000, "delivery.timeout.ms": 300000})
    payload = b"x" * size
    mine = list(range(i * parts, (i + 1) * parts))
    for part in mine:
        p.produce(topic, payload, partition=part)
    if p.flush(60) != 0:
        raise SystemExit("producer %d: the warm-up record was not acknowledged within 60 s" % i)
    latencies = array("d")
    errors = [0]

    def done(err, msg):
        if err is None:
            latencies.append(msg.latency())
        else:
            errors[0] += 1

    barrier.wait()
    start = time.time()
    stop, n = start + seconds, 0
    while True:
        if n % 64 == 0 and time.time() >= stop:
            break
        if rate:
            ahead = start + n / rate - time.time()
            if ahead > 0:
                p.poll(ahead)
        while True:
            try:
                p.produce(topic, payload, partition=mine[n % parts], on_delivery=done)
                break
            except BufferError:
                p.poll(0.001)
        n += 1
        if n % 512 == 0:
            p.poll(0)
    left = p.flush(600)
    out.put((start, time.time(), latencies.tobytes(), errors[0], left))


def main():
    boot, topic, acks, procs, parts = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    seconds = float(sys.argv[6])
    rate = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
    size = int(sys.argv[8]) if len(sys.argv) > 8 else 100
    barrier, out = mp.Barrier(procs), mp.Queue()
    workers = [mp.Process(target=worker, args=(i, boot, topic, acks, parts, seconds, rate, size, barrier, out))
               for i in range(procs)]
    for w in workers:
        w.start()
    results = [out.get(timeout=900) for _ in workers]
    for w in workers:
        w.join()
    latencies = array("d")
    for r in results:
        latencies.frombytes(r[2])
    lat = sorted(latencies)
    start, end = min(r[0] for r in results), max(r[1] for r in results)

    def pct(q):
        return round(1000 * lat[min(len(lat) - 1, int(len(lat) * q))], 1) if lat else None

    print(json.dumps({"acks": acks, "procs": procs, "partitions_each": parts, "seconds_producing": seconds, "rate_per_producer": rate,
                      "acked": len(lat), "errors": sum(r[3] for r in results),
                      "unacked": sum(r[4] for r in results), "seconds": round(end - start, 2),
                      "records_per_s": round(len(lat) / (end - start)),
                      "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0)}))


if __name__ == "__main__":
    main()
