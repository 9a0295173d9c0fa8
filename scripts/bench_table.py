#!/usr/bin/env python3
"""Turns scripts/bench.sh's results.tsv into the markdown tables of docs/BENCHMARKS.md.

Usage: bench_table.py RESULTS_TSV [MACHINE_TXT]

One line per row (produce / consume / latency), one column per system. Each kelp cell carries
its ratio to kelp tokio+memory (the reference configuration), to the SeaweedFS Go gateway and
to Tansu (a Rust Kafka broker, on its memory engine) where those ran the same row. Ratios say how many times better kelp is: throughput kelp/peer,
CPU and latency peer/kelp.
"""

import csv
import sys

REF = "kelp-tokio-memory"
PEER = "go-gateway"
TANSU = "tansu-memory"
KINDS = ("produce", "consume", "consume-simple", "latency", "latency-probe", "latency-lean")
NAMES = {
    "kelp-tokio-memory": "kelp tokio, memory",
    "kelp-mio-memory": "kelp mio, memory",
    "kelp-tokio-disk": "kelp tokio, disk",
    "kelp-mio-disk": "kelp mio, disk",
    "kelp-tokio-seaweedmq": "kelp tokio, SeaweedMQ",
    "kelp-mio-seaweedmq": "kelp mio, SeaweedMQ",
    "go-gateway": "Go gateway (SeaweedMQ)",
    "tansu-memory": "Tansu 0.6, memory",
    "kelp-base-tokio-memory": "kelp tokio, memory, base build",
}


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def short(v):
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e4:
        return f"{v / 1e3:.0f}k"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def ratio(a, b):
    if a is None or b is None or b == 0 or a == 0:
        return None
    r = a / b
    return f"{r:.0f}×" if r >= 10 else f"{r:.2f}×"


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    if len(sys.argv) > 2:
        print("```")
        print(open(sys.argv[2]).read().rstrip())
        print("```")
        print()
    systems = []
    for r in rows:
        if r["system"] not in systems:
            systems.append(r["system"])
    keys = []
    data = {}
    for r in rows:
        if r["kind"] not in KINDS:
            continue
        k = (r["kind"], r["size"], r["partitions"], r["acks"], r["compression"])
        if k not in keys:
            keys.append(k)
        data[(k, r["system"])] = r

    def label(k):
        kind, size, parts, acks, comp = k
        size = "1 KiB" if size == "1024" else f"{size} B"
        if kind == "produce":
            return f"produce {size}, {parts} p, acks {acks}, {comp}"
        if kind == "consume":
            return f"consume {size}, {parts} p, group"
        if kind == "consume-simple":
            return f"consume {size}, {parts} p, simple (no group)"
        if kind == "latency-probe":
            return f"Java client: {size}, {parts} p, acks {acks}"
        if kind == "latency-lean":
            return f"lean client: {size}, {parts} p, acks {acks}"
        return f"rdkafka_performance: {size}, {parts} p, acks {acks}"

    def expected(k, s):
        """Records a consume row should have read: what its produce row wrote."""
        if k[0] not in ("consume", "consume-simple"):
            return None
        for x in rows:
            if (x["kind"], x["system"], x["size"], x["partitions"], x["acks"], x["compression"]) == (
                "produce", s, k[1], k[2], "1", "none"):
                return x["records"]
        return None

    def partial(k, s):
        r = data.get((k, s))
        want = expected(k, s)
        return bool(r) and want is not None and r["records"] != want

    def cell(k, s, field, higher_better, fmt):
        r = data.get((k, s))
        v = num(r[field]) if r else None
        if v is None:
            return "–"
        if partial(k, s):
            # A consumer that stalled: its rate is shown, its CPU per record means nothing.
            if field != "msgs_per_s":
                return "–"
            return f"{fmt(v)} (stalled: {r['records']} of {expected(k, s)} records in the time limit)"
        out = fmt(v)
        notes = []
        for other, tag in ((REF, ""), (PEER, " Go"), (TANSU, " Tansu")):
            if s == other or not s.startswith("kelp") or partial(k, other):
                continue
            o = data.get((k, other))
            ov = num(o[field]) if o else None
            rr = ratio(v, ov) if higher_better else ratio(ov, v)
            if rr:
                notes.append(rr + tag)
        return out + (f" ({', '.join(notes)})" if notes else "")

    head = "| row | " + " | ".join(NAMES.get(s, s) for s in systems) + " |"
    sep = "|---" * (len(systems) + 1) + "|"

    print("Throughput, records per second (ratios: vs kelp tokio+memory; `Go`: vs the Go gateway; `Tansu`: vs Tansu)")
    print()
    print(head)
    print(sep)
    for k in keys:
        if k[0].startswith("latency"):
            continue
        print(f"| {label(k)} | " + " | ".join(cell(k, s, "msgs_per_s", True, short) for s in systems) + " |")
    print()
    print("CPU of the system under test per record, ns (lower is better; ratios: how many times less)")
    print()
    print(head)
    print(sep)
    for k in keys:
        if k[0].startswith("latency"):
            continue
        print(f"| {label(k)} | " + " | ".join(cell(k, s, "cpu_ns_per_record", False, short) for s in systems) + " |")
    lat = [k for kind in ("latency-lean", "latency-probe", "latency") for k in keys if k[0] == kind]
    if lat:
        print()
        print("Produce latency, µs: p50 / p99 / p99.9 (rate achieved). Lean client rows (benches/src/bin/")
        print("latency_probe.rs): from when a record fell due, on a fixed schedule, to its acknowledgement, at")
        print("half the system's maximum; one connection, linger 0, up to 5 requests in flight. Java client")
        print("rows: send() to callback, at half the system's own maximum rate, or (`probe max`) at the")
        print("highest rate the probe held;")
        print("`server p99 ≤`: kelp's own Produce p99 from /metrics over the same run (histogram bucket bound).")
        print("rdkafka_performance rows: its -l latencies at half the maximum, capped at what it sustains.")
        print()
        print(head)
        print(sep)
        for k in lat:
            cells = []
            for s in systems:
                r = data.get((k, s))
                if not r or r["p99_us"] == "-":
                    cells.append("–")
                    continue
                c = f"{r['p50_us']} / {r['p99_us']} / {r['p999_us']} ({short(num(r['msgs_per_s']))}/s"
                basis = r.get("rate_basis") or "-"
                if basis == "probe-max":
                    c += ", probe max"
                elif basis == "capped":
                    c += ", capped"
                elif basis == "unsustained":
                    c += ", rate not held"
                c += ")"
                if (r.get("server_p99_us") or "-") != "-":
                    c += f" server p99 ≤ {r['server_p99_us']}"
                notes = []
                for other, tag in ((REF, ""), (PEER, " Go"), (TANSU, " Tansu")):
                    if s == other or not s.startswith("kelp"):
                        continue
                    o = data.get((k, other))
                    rr = ratio(num(o["p99_us"]) if o else None, num(r["p99_us"]))
                    if rr:
                        notes.append(f"p99 {rr}{tag}")
                if notes:
                    c += f" ({', '.join(notes)})"
                cells.append(c)
            print(f"| {label(k)} | " + " | ".join(cells) + " |")
    extra = [r for r in rows if r["kind"] in ("partition_memory", "connections")]
    if extra:
        print()
        print("| system | curve | point | figure |")
        print("|---|---|---|---|")
        for r in extra:
            if r["kind"] == "partition_memory":
                print(f"| {r['system']} | memory per partition | {r['partitions']} partitions | {r['p50_us']} B |")
            else:
                print(
                    f"| {r['system']} | produce, 100 B, 16 p | {r['command']} | "
                    f"{short(num(r['msgs_per_s']))} msg/s, {r['cpu_ns_per_record']} ns CPU/record |"
                )
    print()
    print("Commands (one per row kind; the full list is in results.tsv):")
    print()
    print("```")
    seen = set()
    for r in rows:
        kind = (r["system"].startswith("kelp"), r["kind"])
        if kind in seen or r["kind"] not in KINDS:
            continue
        seen.add(kind)
        print(r["command"])
    print("```")


if __name__ == "__main__":
    main()
