#!/usr/bin/env python3
"""kelp end-to-end client: transactions with confluent-kafka (librdkafka).

    python txn_client.py mixed --bootstrap B --topic T --txn-id ID --rounds N
    python txn_client.py read --bootstrap B --topic T --isolation read_committed --expect N

mixed  a transactional producer runs N rounds over the topic's 2 partitions: a transaction of
       four records "{id}-c{round}-{j}" that commits, then one of four "{id}-a{round}-{j}" that
       aborts (record j to partition j % 2). Prints {"committed": [...], "aborted": [...]}
       with the values in partition, then send order.
read   reads both partitions from the start with the given isolation level until --expect
       records arrived (then 2 s more); prints {"values": [...]} in partition, then offset
       order.

Exit 0 when every call succeeded; 1 with the error.
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

p = argparse.ArgumentParser()
p.add_argument("mode", choices=("mixed", "read"))
p.add_argument("--bootstrap", required=True)
p.add_argument("--topic", required=True)
p.add_argument("--txn-id")
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--isolation", default="read_committed")
p.add_argument("--expect", type=int, default=0)
args = p.parse_args()


def mixed():
    prod = Producer({"bootstrap.servers": args.bootstrap, "transactional.id": args.txn_id})
    prod.init_transactions(30)
    committed, aborted = [[], []], [[], []]
    for r in range(args.rounds):
        for kind, into in (("c", committed), ("a", aborted)):
            prod.begin_transaction()
            for j in range(4):
                value = f"{args.txn_id}-{kind}{r}-{j}"
                prod.produce(args.topic, key=f"k{j}", value=value, partition=j % 2)
                into[j % 2].append(value)
            # Flushed first, so that the aborted records are in the log, not only in memory.
            prod.flush(30)
            if kind == "c":
                prod.commit_transaction(30)
            else:
                prod.abort_transaction(30)
    print(json.dumps({"committed": committed[0] + committed[1], "aborted": aborted[0] + aborted[1]}))


def read():
    c = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": "unused-reader",
        "enable.auto.commit": False,
        "isolation.level": args.isolation,
    })
    c.assign([TopicPartition(args.topic, 0, 0), TopicPartition(args.topic, 1, 0)])
    by_partition = {0: [], 1: []}
    seen, deadline, quiet_until = 0, time.time() + 60, None
    while time.time() < deadline and (quiet_until is None or time.time() < quiet_until):
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            print(json.dumps({"error": str(m.error())}), file=sys.stderr)
            continue
        by_partition[m.partition()].append(m.value().decode())
        seen += 1
        if seen >= args.expect and quiet_until is None:
            quiet_until = time.time() + 2
    c.close()
    print(json.dumps({"values": by_partition[0] + by_partition[1]}))


try:
    mixed() if args.mode == "mixed" else read()
except Exception as e:  # noqa: BLE001 - any failure is the test's answer
    print(json.dumps({"failed": repr(e)}))
    sys.exit(1)
