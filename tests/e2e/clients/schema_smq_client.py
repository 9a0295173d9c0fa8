"""A schema-aware workload for typed topics on SeaweedMQ (confluent-kafka and its serializers).

  schema_smq_client.py BOOTSTRAP REGISTRY_URL PREFIX produce [--no-configs] [--tolerant]
  schema_smq_client.py BOOTSTRAP REGISTRY_URL PREFIX read

produce: creates four topics with the AdminClient and produces to each through a serializer:
  PREFIX-avro   value and key validation (confluent.{value,key}.schema.validation=true): Avro
                records with a nullable union, a nested record with a nullable field, an array
                of records, a map, an enum, a bytes decimal, a timestamp-millis and a date;
                framed Avro keys; halfway through the value schema gains a field (v2, a
                BACKWARD-compatible evolution) and the rest are written with it
  PREFIX-proto  value validation: a Protobuf message that is the second of its file (so its
                Confluent framing carries message indexes) with a nested message, repeated and
                map fields, an enum, an optional field and a google.protobuf.Timestamp
  PREFIX-json   value validation: JSON Schema documents with nested objects, arrays and a
                nullable field
  PREFIX-plain  no schema: raw bytes (invalid UTF-8 among them) and a null value
Every record has headers (one with a null value) and a producer timestamp. With --no-configs the
topics are made without configs (a gateway that has no broker-side validation). With --tolerant
(comparing gateways) a refused record or topic is noted under "errors" and the rest goes on.

read: reads every topic from offset 0 to its end.

Both print one JSON line: per topic, every record as {offset, timestamp, key, value, headers}
with bytes in hex (null as null); produce adds the schema ids. The Rust test or the comparison
script judges it. Exits 1 when something did not happen at all.
"""
import json
import struct
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

boot, url, prefix, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
with_configs = "--no-configs" not in sys.argv[5:]
tolerant = "--tolerant" in sys.argv[5:]
COUNT = 12
TOPICS = {kind: f"{prefix}-{kind}" for kind in ("avro", "proto", "json", "plain")}
out = {"topics": TOPICS}


def fail(msg):
    print(json.dumps({"error": msg, "seen": out}))
    sys.exit(1)


def hx(b):
    return None if b is None else b.hex()


ORDER_V1 = {
    "type": "record", "name": "Order", "namespace": "kelp.e2e.smq",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {"name": "customer", "type": {"type": "record", "name": "Customer", "fields": [
            {"name": "name", "type": "string"},
            {"name": "email", "type": ["null", "string"], "default": None}]}},
        {"name": "lines", "type": {"type": "array", "items": {"type": "record", "name": "Line", "fields": [
            {"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}}},
        {"name": "attrs", "type": {"type": "map", "values": "string"}},
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
        {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
        {"name": "placed", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    ],
}
ORDER_V2 = dict(ORDER_V1, fields=ORDER_V1["fields"] + [{"name": "coupon", "type": ["null", "string"], "default": None}])
ORDER_KEY = {"type": "record", "name": "OrderKey", "namespace": "kelp.e2e.smq",
             "fields": [{"name": "id", "type": "long"}, {"name": "region", "type": ["null", "string"], "default": None}]}

SHIPMENT_JSON = {
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Shipment", "type": "object",
    "required": ["id", "parcels"],
    "properties": {
        "id": {"type": "integer"},
        "carrier": {"type": "string"},
        "note": {"type": ["string", "null"]},
        "weight": {"type": "number"},
        "parcels": {"type": "array", "items": {"type": "object", "properties": {
            "ref": {"type": "string"}, "kg": {"type": "number"}}}},
        "to": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}}},
    },
}


def proto_type():
    """kelp.e2e.smq.Shipment, the second message of its file, built at run time (no protoc)."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    F = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(name="kelp/smq_shipment.proto", package="kelp.e2e.smq", syntax="proto3",
                                           dependency=["google/protobuf/timestamp.proto"])
    other = f.message_type.add(name="Unused")
    other.field.add(name="x", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m = f.message_type.add(name="Shipment")
    parcel = m.nested_type.add(name="Parcel")
    parcel.field.add(name="ref", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    parcel.field.add(name="grams", number=2, type=F.TYPE_UINT32, label=F.LABEL_OPTIONAL)
    entry = m.nested_type.add(name="CountsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    state = m.enum_type.add(name="State")
    for i, n in enumerate(["PENDING", "SENT", "LOST"]):
        state.value.add(name=n, number=i)
    m.field.add(name="id", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    m.field.add(name="parcels", number=2, type=F.TYPE_MESSAGE, type_name=".kelp.e2e.smq.Shipment.Parcel",
                label=F.LABEL_REPEATED)
    m.field.add(name="counts", number=3, type=F.TYPE_MESSAGE, type_name=".kelp.e2e.smq.Shipment.CountsEntry",
                label=F.LABEL_REPEATED)
    m.field.add(name="state", number=4, type=F.TYPE_ENUM, type_name=".kelp.e2e.smq.Shipment.State",
                label=F.LABEL_OPTIONAL)
    m.field.add(name="note", number=5, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL, proto3_optional=True,
                oneof_index=0)
    m.oneof_decl.add(name="_note")
    m.field.add(name="sent_at", number=6, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp",
                label=F.LABEL_OPTIONAL)
    m.field.add(name="tags", number=7, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kelp.e2e.smq.Shipment"))


def order(i, v2):
    o = {
        "id": 1000 + i,
        "note": None if i % 3 == 0 else f"note {i} \u00e9",
        "customer": {"name": f"customer {i}", "email": None if i % 2 else f"c{i}@example.com"},
        "lines": [{"sku": f"sku-{i}-{j}", "qty": j + 1} for j in range(i % 4)],
        "attrs": {"channel": "web", "n": str(i)} if i % 2 else {},
        "status": ["NEW", "PAID", "SHIPPED"][i % 3],
        "price": __import__("decimal").Decimal(f"{i * 7}.{i % 100:02d}"),
        "placed": 1_700_000_000_000 + i * 1000,
        "day": 19_700 + i,
    }
    if v2:
        o["coupon"] = None if i % 2 else f"SAVE{i}"
    return o


def shipment(cls, i):
    s = cls(id=500 + i, state=i % 3, tags=[f"t{j}" for j in range(i % 3)])
    for j in range(i % 3 + 1):
        p = s.parcels.add()
        p.ref = f"p-{i}-{j}"
        p.grams = 4_000_000_000 + j if i % 4 == 0 else 250 * (j + 1)
    if i % 2:
        s.counts["boxes"] = i
        s.counts["bags"] = -i
    if i % 3:
        s.note = f"shipment {i}"
    if i % 5:
        s.sent_at.seconds = 1_700_000_000 + i
        s.sent_at.nanos = 123_000 * i
    return s


def json_doc(i):
    d = {"id": 700 + i, "carrier": "kelp post", "parcels": [{"ref": f"r{j}", "kg": 0.5 * j} for j in range(i % 3)],
         "note": None if i % 2 else f"fragile {i}", "weight": 1.25 * i}
    if i % 3:
        d["to"] = {"city": "Oslo", "zip": 150 + i}
    return d


HEADERS = [("trace", b"\x00\xff\x01"), ("empty", None), ("text", "h\u00e9".encode())]


def record_json(m):
    hs = [[k, hx(v)] for k, v in (m.headers() or [])]
    return {"offset": m.offset(), "timestamp": m.timestamp()[1], "key": hx(m.key()), "value": hx(m.value()),
            "headers": hs}


def produce():
    admin = AdminClient({"bootstrap.servers": boot})
    configs = {
        "avro": {"confluent.value.schema.validation": "true", "confluent.key.schema.validation": "true"},
        "proto": {"confluent.value.schema.validation": "true"},
        "json": {"confluent.value.schema.validation": "true"},
        "plain": {},
    }
    new = [NewTopic(t, num_partitions=1, replication_factor=1, config=configs[k] if with_configs else {})
           for k, t in TOPICS.items()]
    for t, f in admin.create_topics(new, operation_timeout=30).items():
        try:
            f.result()
        except Exception as e:  # noqa: BLE001 - reported whole
            if not tolerant:
                fail(f"create {t}: {e}")
            out.setdefault("errors", []).append(f"create {t}: {e}")
    sr = SchemaRegistryClient({"url": url})
    delivered = {t: [] for t in TOPICS.values()}
    errors = []

    def on_delivery(ts):
        def report(err, msg):
            if err is not None:
                errors.append(f"{msg.topic()}: {err}")
            else:
                # A delivery report carries no headers, and its timestamp is the broker's when the
                # broker says it set one: what was sent is the headers and timestamp given.
                r = record_json(msg)
                r["headers"] = [[k, hx(v)] for k, v in HEADERS]
                r["timestamp"] = ts
                delivered[msg.topic()].append(r)
        return report

    p = Producer({"bootstrap.servers": boot, "linger.ms": 5, "enable.idempotence": True})
    # Avro: v1 for the first half, v2 (one more nullable field) for the rest.
    key_ser = AvroSerializer(sr, json.dumps(ORDER_KEY))
    t = TOPICS["avro"]
    for half, schema in ((0, ORDER_V1), (1, ORDER_V2)):
        ser = AvroSerializer(sr, json.dumps(schema))
        for i in range(half * COUNT // 2, (half + 1) * COUNT // 2):
            key = key_ser({"id": 1000 + i, "region": None if i % 2 else "eu"},
                          SerializationContext(t, MessageField.KEY))
            value = ser(order(i, half == 1), SerializationContext(t, MessageField.VALUE))
            ts = 1_700_000_000_000 + i
            p.produce(t, key=key, value=value, headers=HEADERS, timestamp=ts, on_delivery=on_delivery(ts))
        p.flush(30)
    cls = proto_type()
    ser = ProtobufSerializer(cls, sr, {"use.deprecated.format": False})
    t = TOPICS["proto"]
    for i in range(COUNT):
        value = ser(shipment(cls, i), SerializationContext(t, MessageField.VALUE))
        p.produce(t, key=f"s{i}".encode(), value=value, headers=HEADERS, timestamp=1_700_000_100_000 + i,
                  on_delivery=on_delivery(1_700_000_100_000 + i))
    ser = JSONSerializer(json.dumps(SHIPMENT_JSON), sr)
    t = TOPICS["json"]
    for i in range(COUNT):
        value = ser(json_doc(i), SerializationContext(t, MessageField.VALUE))
        ts = 1_700_000_200_000 + i
        p.produce(t, key=None, value=value, headers=HEADERS, timestamp=ts, on_delivery=on_delivery(ts))
    t = TOPICS["plain"]
    for i in range(COUNT):
        value = None if i == 3 else bytes([0xC3, 0x28, i, 0x00, 0xFF]) + f"plain {i}".encode()
        p.produce(t, key=bytes([i, 0xFE]), value=value, headers=HEADERS, timestamp=1_700_000_300_000 + i,
                  on_delivery=on_delivery(1_700_000_300_000 + i))
    if p.flush(60) != 0:
        fail("records still in flight after 60 s")
    if errors and not tolerant:
        fail(f"delivery errors: {errors[:5]}")
    out.setdefault("errors", []).extend(errors)
    out["sent"] = delivered
    ids = {}
    for subject in (f"{TOPICS['avro']}-value", f"{TOPICS['avro']}-key", f"{TOPICS['proto']}-value",
                    f"{TOPICS['json']}-value"):
        try:
            ids[subject] = [sr.get_version(subject, v).schema_id for v in sr.get_versions(subject)]
        except Exception as e:  # noqa: BLE001 - a gateway whose registry is elsewhere
            ids[subject] = str(e)
    out["schema_ids"] = ids


def read():
    c = Consumer({"bootstrap.servers": boot, "group.id": f"{prefix}-reader-{time.time()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    got = {}
    for t in TOPICS.values():
        low, high = c.get_watermark_offsets(TopicPartition(t, 0), timeout=30)
        c.assign([TopicPartition(t, 0, 0)])
        records = []
        deadline = time.time() + 60
        while (not records or records[-1]["offset"] < high - 1) and time.time() < deadline:
            for m in c.consume(100, 1.0):
                if m.error():
                    out.setdefault("read_errors", []).append(str(m.error()))
                    continue
                records.append(record_json(m))
        got[t] = {"low": low, "high": high, "records": records}
    c.close()
    out["read"] = got


if mode == "produce":
    produce()
elif mode == "read":
    read()
else:
    fail(f"unknown mode {mode}")
print(json.dumps(out))
