"""Shared by the Python end-to-end clients (confluent_client.py, kafka_python_client.py).

It holds what does not depend on the Kafka library: the command line, the records a
produce-verify run sends, the check of what was read back against what was acknowledged, the
watchdog that bounds a run, and the output conventions:

* success: a one-line JSON summary on stdout, exit 0;
* failure: what differed on stderr, a last line starting with ``FAIL:``, exit 1.

The expected data is deterministic in the record index ``i`` (and one base timestamp), so a
failure names the record and the field that differed.
"""

import argparse
import json
import os
import sys
import threading
import time

PARTITIONS = 3
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
# librdkafka reports this timestamp type for CreateTime records; kafka-python reports 0. Each
# client maps its own constant onto CREATE_TIME before checking.
CREATE_TIME = "CreateTime"


def parse_args(description, modes, has_admin):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bootstrap", required=True, metavar="HOST:PORT")
    p.add_argument("--topic", required=True, metavar="NAME")
    p.add_argument("--mode", required=True, choices=modes)
    p.add_argument("--compression", default="none", choices=COMPRESSIONS)
    p.add_argument("--count", type=int, default=1000, metavar="N", help="records to produce (default 1000)")
    p.add_argument("--first", type=int, default=0, metavar="I", help="produce: index of the first record (default 0)")
    p.add_argument(
        "--partitions", type=int, default=6, metavar="P", help="produce: record i goes to partition i %% P (default 6)"
    )
    if has_admin:
        p.add_argument(
            "--create", action="store_true", help="create the topic (3 partitions) with the admin API first"
        )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up (exit 1) after this long in all (default 60)",
    )
    add_group_args(p)
    add_security_args(p)
    args = p.parse_args()
    if args.mode == "group" and not args.group:
        p.error("--mode group needs --group NAME")
    check_security_args(p, args)
    if args.count < 1:
        p.error("--count must be at least 1")
    return args


# ---- security: the same flags in every client program -------------------------------------------
#
# --security-protocol PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL (default PLAINTEXT: no flag given
# means the plaintext behaviour these clients always had), --sasl-mechanism, --sasl-username,
# --sasl-password for the SASL protocols, --ssl-ca (the CA bundle to trust), --ssl-cert and
# --ssl-key (a client certificate chain and its PKCS#8 key, both PEM) for the SSL ones.
# --ssl-keystore (key and chain in one PEM file) is what the Java client takes; the Python
# clients accept it and use --ssl-cert and --ssl-key. Each client maps these onto its own
# configuration. Passwords are never printed.

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def add_security_args(p):
    g = p.add_argument_group("security (default: PLAINTEXT, no authentication)")
    g.add_argument("--security-protocol", default="PLAINTEXT", choices=SECURITY_PROTOCOLS)
    g.add_argument("--sasl-mechanism", choices=SASL_MECHANISMS)
    g.add_argument("--sasl-username", metavar="USER")
    g.add_argument("--sasl-password", metavar="PASSWORD")
    g.add_argument("--ssl-ca", metavar="PEM", help="CA certificates to trust (else the system's)")
    g.add_argument("--ssl-cert", metavar="PEM", help="client certificate chain (with --ssl-key)")
    g.add_argument("--ssl-key", metavar="PEM", help="client private key, PKCS#8, unencrypted")
    g.add_argument("--ssl-keystore", metavar="PEM", help="Java's key+chain file: accepted, not used here")


def uses_sasl(args):
    return args.security_protocol.startswith("SASL_")


def uses_tls(args):
    return args.security_protocol.endswith("SSL")


def check_security_args(p, args):
    """Refuses flags that do not fit the protocol (a test that meant TLS must not run without)."""
    sasl_flags = [args.sasl_mechanism, args.sasl_username, args.sasl_password]
    if uses_sasl(args):
        if any(f is None for f in sasl_flags):
            p.error(
                f"--security-protocol {args.security_protocol} needs --sasl-mechanism, --sasl-username "
                "and --sasl-password"
            )
    elif any(f is not None for f in sasl_flags):
        p.error(f"--sasl-* flags need a SASL --security-protocol, not {args.security_protocol}")
    ssl_flags = [args.ssl_ca, args.ssl_cert, args.ssl_key, args.ssl_keystore]
    if not uses_tls(args) and any(f is not None for f in ssl_flags):
        p.error(f"--ssl-* flags need an SSL --security-protocol, not {args.security_protocol}")
    if (args.ssl_cert is None) != (args.ssl_key is None):
        p.error("--ssl-cert and --ssl-key go together")
    if args.security_protocol != "PLAINTEXT":
        _SECURITY.update(security_summary(args))


_SECURITY = {}  # added to every summary line when the protocol is not PLAINTEXT


def security_summary(args):
    """What the summary line says about security (never the password)."""
    out = {"security_protocol": args.security_protocol}
    if uses_sasl(args):
        out["sasl_mechanism"] = args.sasl_mechanism
        out["sasl_username"] = args.sasl_username
    if uses_tls(args):
        out["client_certificate"] = args.ssl_cert is not None
    return out


class Watchdog:
    """Ends the process with exit code 1 once the run's time is up, whatever it is blocked in.

    The library calls may block in C or in a socket wait, so a timer thread calls os._exit; the
    step names what the run was doing.
    """

    def __init__(self, seconds):
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.step = "starting"
        self.errors = {}  # client errors and logs -> times seen, newest last; shown on failure
        global _DOG
        _DOG = self
        timer = threading.Timer(seconds, self._expire)
        timer.daemon = True
        timer.start()

    def remaining(self, floor=0.1):
        return max(floor, self.deadline - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.deadline

    def note(self, text):
        """Keeps a client error or log line for the failure report (bounded, repeats counted)."""
        self.errors[text] = self.errors.pop(text, 0) + 1
        while len(self.errors) > 50:
            del self.errors[next(iter(self.errors))]

    def seen(self, limit=15):
        """The last distinct client errors and logs, oldest first."""
        return [f"client said: {t}" + (f" (x{n})" if n > 1 else "") for t, n in list(self.errors.items())[-limit:]]

    def _expire(self):
        fail(f"timed out after {self.seconds:g}s during: {self.step}")


_DOG = None


def fail(lines):
    """Prints the client's last errors and logs, then what went wrong, and exits 1 at once
    (also from a timer thread)."""
    if isinstance(lines, str):
        lines = [lines]
    if _DOG is not None:
        lines = _DOG.seen() + lines
    out = "\n".join(lines[:-1] + ["FAIL: " + lines[-1]]) + "\n" if lines else "FAIL\n"
    sys.stderr.write(out)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(1)


def ok(summary):
    """Prints the one-line JSON summary and exits 0."""
    summary = summary | _SECURITY
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    sys.stdout.flush()
    os._exit(0)


def step_ok(text):
    """One progress line for a step that passed (admin mode)."""
    sys.stdout.write(f"ok: {text}\n")
    sys.stdout.flush()


# ---- the records of a produce-verify run -----------------------------------------------------


class Expected:
    """One record as sent, and the (partition, offset) its send was acknowledged with."""

    __slots__ = ("i", "partition", "key", "value", "headers", "timestamp", "acked_partition", "acked_offset")

    def __init__(self, i, partition, key, value, headers, timestamp):
        self.i = i
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
        self.acked_partition = None
        self.acked_offset = None


class Got:
    """One record as read back."""

    __slots__ = ("partition", "offset", "key", "value", "headers", "timestamp", "timestamp_type")

    def __init__(self, partition, offset, key, value, headers, timestamp, timestamp_type):
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
        self.timestamp_type = timestamp_type


def record_value(i):
    """Values of varied length that compress; every 50 records one empty and one null value."""
    if i % 50 == 7:
        return b""
    if i % 50 == 23:
        return None
    return (f"value-{i}:" + "kelp-e2e-" * (i % 17)).encode()


def record_headers(i, null_header_values):
    """1 to 3 headers: a plain one, a null (or empty) value, a key that repeats around another."""
    idx = ("idx", str(i).encode())
    kind = (i // PARTITIONS) % 3
    if kind == 0:
        return [idx]
    if kind == 1:
        if null_header_values and (i // 9) % 2 == 0:
            return [idx, ("nil", None)]
        return [idx, ("empty", b"")]
    # The repeated key is not adjacent: order across keys must survive, not only per key.
    return [("dup", b"first"), idx, ("dup", b"second")]


def make_records(count, null_header_values):
    """The records to send; record i goes to partition i % 3 with timestamp base + i."""
    base = (int(time.time() * 1000) // 1000) * 1000 - 600_000
    return [
        Expected(
            i,
            i % PARTITIONS,
            f"key-{i}".encode(),
            record_value(i),
            record_headers(i, null_header_values),
            base + i,
        )
        for i in range(count)
    ]


def expected_counts(records):
    counts = [0] * PARTITIONS
    for r in records:
        counts[r.partition] += 1
    return counts


def watermark_errors(marks, counts):
    """Each partition's (low, high) offsets must be (0, records produced to it)."""
    return [
        f"partition {p}: (low, high) offsets = {(lo, hi)}, expected {(0, counts[p])}"
        for p, (lo, hi) in enumerate(marks)
        if (lo, hi) != (0, counts[p])
    ]


def verify(records, got, limit=25):
    """Every difference between what was sent and acknowledged and what was read, as lines."""
    errors = []
    counts = expected_counts(records)

    # Acknowledgements: each send acked on its own partition, offsets 0..n-1 in send order.
    for p in range(PARTITIONS):
        sent = [r for r in records if r.partition == p]
        acked = [r.acked_offset for r in sent]
        for r in sent:
            if r.acked_partition != r.partition:
                errors.append(f"record {r.i}: sent to partition {r.partition}, acked on {r.acked_partition}")
        if acked != list(range(len(sent))):
            first = next((k for k, o in enumerate(acked) if o != k), None)
            errors.append(
                f"partition {p}: acked offsets are not 0..{len(sent) - 1} in send order; "
                f"send #{first} (record {sent[first].i}) acked at offset {acked[first]}"
            )

    by_offset = {(r.acked_partition, r.acked_offset): r for r in records}
    for p in range(PARTITIONS):
        read = [g for g in got if g.partition == p]
        offsets = [g.offset for g in read]
        if offsets != list(range(counts[p])):
            errors.append(
                f"partition {p}: read {len(read)} records with offsets "
                f"{summarize_offsets(offsets)}, expected 0..{counts[p] - 1} ({counts[p]} records)"
            )
        for g in read:
            r = by_offset.get((p, g.offset))
            if r is None:
                errors.append(f"partition {p} offset {g.offset}: read a record no send was acked with")
                continue
            where = f"record {r.i} (partition {p}, offset {g.offset})"
            for field, want, have in (
                ("key", r.key, g.key),
                ("value", r.value, g.value),
                ("headers", r.headers, g.headers),
                ("timestamp", r.timestamp, g.timestamp),
                ("timestamp type", CREATE_TIME, g.timestamp_type),
            ):
                if want != have:
                    errors.append(f"{where}: {field}: expected {want!r}, got {have!r}")
    if len(errors) > limit:
        errors = errors[:limit] + [f"... and {len(errors) - limit} more differences"]
    return errors


def summarize_offsets(offsets):
    if not offsets:
        return "[]"
    if len(offsets) <= 8:
        return str(offsets)
    return f"[{offsets[0]}, {offsets[1]}, ..., {offsets[-2]}, {offsets[-1]}]"


# ---- the group and produce modes -------------------------------------------------------------
#
# Mode produce: records i in [first, first + count) with key "k{i}" and value "v{i}" to partition
# i % partitions, every ack awaited; a one-line JSON summary.
#
# Mode group: one consumer group member. Every line on stdout is one JSON object with "event"
# and "t_ms" (wall clock, ms since the epoch), so a harness can follow several members:
#   ready          set up, about to wait for --start-file (if given)
#   start          about to create the consumer and subscribe (the join is measured from here)
#   assigned       partitions added ("partitions") and all owned after it ("owned")
#   revoked, lost  partitions taken away ("partitions"), "owned" after it
#   batch          records of one poll batch, [[partition, offset, key], ...], before its commit
#   commit_failed  a synchronous commit that did not land: "offsets" [[partition, next], ...]
#   summary        the last line: everything consumed, the assignment history, why it stopped
# It stops when --stop-file exists (commit, close = leave the group, summary, exit 0) or after
# --idle-exit seconds without records once it has seen one.


def add_group_args(p):
    p.add_argument("--group", metavar="NAME", help="group mode: the consumer group")
    p.add_argument("--stop-file", metavar="PATH", help="group mode: stop once this file exists")
    p.add_argument("--start-file", metavar="PATH", help="group mode: join only once this file exists")
    p.add_argument(
        "--idle-exit", type=float, default=0, metavar="SECONDS", help="group mode: stop after this long idle"
    )
    p.add_argument("--max-batch", type=int, default=500, metavar="N", help="group mode: records per poll")
    p.add_argument(
        "--batch-delay-ms", type=int, default=0, metavar="MS", help="group mode: pause after each batch"
    )
    p.add_argument(
        "--group-protocol",
        default="classic",
        choices=("classic", "consumer"),
        help="group mode: classic (JoinGroup/SyncGroup) or consumer (KIP-848 ConsumerGroupHeartbeat)",
    )
    p.add_argument(
        "--regex-topics",
        metavar="T1,T2",
        help="group mode: --topic is a regex; these are the topics it may match, in reporting order",
    )


def now_ms():
    return int(time.time() * 1000)


def emit(event, **fields):
    fields["event"] = event
    fields["t_ms"] = now_ms()
    sys.stdout.write(json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def produce_records(args):
    """The records of a produce run, as Expected (no headers, the producer's clock)."""
    return [
        Expected(i, i % args.partitions, f"k{i}".encode(), f"v{i}".encode(), [], None)
        for i in range(args.first, args.first + args.count)
    ]


def produce_summary(client, version, args, records):
    """Checks every record was acked on its partition and prints the summary (exit 0)."""
    bad = [r.i for r in records if r.acked_offset is None or r.acked_partition != r.partition]
    if bad:
        fail(f"{len(bad)} records not acked on their partition, first {bad[:10]}")
    per = [0] * args.partitions
    for r in records:
        per[r.partition] += 1
    ok(
        {
            "client": client,
            "version": version,
            "mode": "produce",
            "topic": args.topic,
            "first": args.first,
            "records": len(records),
            "per_partition": per,
        }
    )


class Member:
    """The client-independent part of one group member: events, stop conditions, summary."""

    def __init__(self, args, dog):
        self.args = args
        self.dog = dog
        self.consumed = []
        self.history = []
        self.owned = set()
        self.commit_failures = 0
        self.last_record = None
        self.joined = False

    def wait_start(self):
        emit("ready")
        if self.args.start_file:
            self.dog.step = f"waiting for the start file {self.args.start_file}"
            while not os.path.exists(self.args.start_file):
                time.sleep(0.02)
        emit("start", group=self.args.group)
        self.dog.step = f"waiting for the first assignment in group {self.args.group}"

    def _change(self, event, parts):
        parts = sorted(parts)
        if event == "assigned":
            self.owned |= set(parts)
            if not self.joined:
                self.joined = True
                self.dog.step = f"consuming in group {self.args.group}"
        else:
            self.owned -= set(parts)
        entry = {"event": event, "t_ms": now_ms(), "partitions": parts, "owned": sorted(self.owned)}
        self.history.append(entry)
        emit(event, partitions=parts, owned=sorted(self.owned))

    def assigned(self, parts):
        self._change("assigned", parts)

    def revoked(self, parts):
        self._change("revoked", parts)

    def lost(self, parts):
        self._change("lost", parts)

    def batch(self, recs):
        """recs: [(partition, offset, key str)]; returns the offsets to commit [[p, next]]."""
        if not recs:
            return []
        self.consumed.extend([p, o, k] for p, o, k in recs)
        self.last_record = time.monotonic()
        emit("batch", records=[[p, o, k] for p, o, k in recs])
        nxt = {}
        for p, o, _ in recs:
            nxt[p] = max(nxt.get(p, -1), o + 1)
        return sorted([p, n] for p, n in nxt.items())

    def commit_failed(self, offsets, err):
        self.commit_failures += 1
        emit("commit_failed", offsets=offsets, error=str(err))

    def stop_reason(self):
        if self.args.stop_file and os.path.exists(self.args.stop_file):
            return "stop-file"
        idle = self.args.idle_exit
        if idle > 0 and self.last_record is not None and time.monotonic() - self.last_record >= idle:
            return "idle"
        return None

    def pause(self):
        if self.args.batch_delay_ms > 0:
            time.sleep(self.args.batch_delay_ms / 1000)

    def finish(self, client, version, reason, **extra):
        summary = {
            "event": "summary",
            "t_ms": now_ms(),
            "client": client,
            "version": version,
            "mode": "group",
            "group": self.args.group,
            "topic": self.args.topic,
            "stopped_by": reason,
            "consumed": self.consumed,
            "assignments": self.history,
            "commit_failures": self.commit_failures,
        }
        summary.update(extra)
        summary.update(_SECURITY)
        sys.stdout.write(json.dumps(summary, sort_keys=True, separators=(",", ":")) + "\n")
        sys.stdout.flush()
        os._exit(0)
