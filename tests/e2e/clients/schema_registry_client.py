"""confluent-kafka's schema registry client and serializers against kelp's broker and registry.

  schema_registry_client.py BOOTSTRAP REGISTRY_URL TOPIC_PREFIX COUNT

For Avro and JSON Schema: produces COUNT records through the format's serializer (which
registers the value schema), consumes them back through its deserializer, and checks each
record equals what was sent. Then checks what a registry user relies on: the registered id,
the subject's versions, a compatible evolution, and an incompatible one refused with 409.
Prints one JSON line with what it saw; exits 1 on the first mismatch.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

boot, url, prefix, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sr = SchemaRegistryClient({"url": url})
out = {}

AVRO_V1 = json.dumps({
    "type": "record", "name": "User", "namespace": "kelp.e2e",
    "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
               {"name": "email", "type": ["null", "string"], "default": None}],
})
AVRO_V2 = json.dumps({
    "type": "record", "name": "User", "namespace": "kelp.e2e",
    "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
               {"name": "email", "type": ["null", "string"], "default": None},
               {"name": "age", "type": "int", "default": 0}],
})
AVRO_BAD = json.dumps({
    "type": "record", "name": "User", "namespace": "kelp.e2e",
    "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": "string"},
               {"name": "country", "type": "string"}],
})
JSON_V1 = json.dumps({
    "$schema": "http://json-schema.org/draft-07/schema#", "title": "Order", "type": "object",
    "properties": {"id": {"type": "integer"}, "item": {"type": "string"}, "qty": {"type": "integer"}},
    "required": ["id", "item"],
})


def fail(msg):
    print(json.dumps({"error": msg, "seen": out}))
    sys.exit(1)


def roundtrip(kind, topic, serializer, deserializer, make):
    p = Producer({"bootstrap.servers": boot, "linger.ms": 5})
    sent = [make(i) for i in range(count)]
    for rec in sent:
        value = serializer(rec, SerializationContext(topic, MessageField.VALUE))
        p.produce(topic, value=value, partition=0)
    if p.flush(30) != 0:
        fail(f"{kind}: records not delivered")
    c = Consumer({"bootstrap.servers": boot, "group.id": f"sr-{topic}", "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline = [], time.time() + 60
    while len(got) < count and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                fail(f"{kind}: consume error {m.error()}")
            got.append(deserializer(m.value(), SerializationContext(topic, MessageField.VALUE)))
    c.close()
    if got != sent:
        fail(f"{kind}: read back {len(got)} records, not what was sent (first: {got[:1]} vs {sent[:1]})")
    out[kind] = {"records": len(got)}


# Avro: the serializer registers the schema on first use.
topic = f"{prefix}-avro"
subject = f"{topic}-value"
roundtrip(
    "avro", topic,
    AvroSerializer(sr, AVRO_V1),
    AvroDeserializer(sr),
    lambda i: {"id": i, "name": f"user {i}", "email": None if i % 2 else f"u{i}@example.com"},
)
latest = sr.get_latest_version(subject)
out["avro"].update({"id": latest.schema_id, "version": latest.version, "subjects": sr.get_subjects()})
# A compatible evolution (a field with a default) is a new version under a new id.
v2_id = sr.register_schema(subject, Schema(AVRO_V2, "AVRO"))
if sr.get_versions(subject) != [1, 2] or v2_id == latest.schema_id:
    fail(f"avro: after evolving, versions {sr.get_versions(subject)}, ids {latest.schema_id} and {v2_id}")
# Registering the same schema again answers the same id.
if sr.register_schema(subject, Schema(AVRO_V2, "AVRO")) != v2_id:
    fail("avro: the same schema registered again got another id")
# An incompatible one (a new field without a default) is refused under BACKWARD.
try:
    sr.register_schema(subject, Schema(AVRO_BAD, "AVRO"))
    fail("avro: an incompatible schema was accepted")
except SchemaRegistryError as e:
    out["avro"]["incompatible"] = {"status": e.http_status_code, "code": e.error_code}
if not sr.test_compatibility(subject, Schema(AVRO_V2, "AVRO")):
    fail("avro: the latest schema is not compatible with itself")
# A record written with v1 is read by a deserializer holding v2 as its reader schema.
reader = AvroDeserializer(sr, AVRO_V2)
writer = AvroSerializer(sr, AVRO_V1, conf={"auto.register.schemas": False, "use.latest.version": False})
rec = reader(writer({"id": 7, "name": "x", "email": None}, SerializationContext(topic, MessageField.VALUE)),
             SerializationContext(topic, MessageField.VALUE))
if rec != {"id": 7, "name": "x", "email": None, "age": 0}:
    fail(f"avro: v1 record read with v2 gave {rec}")

# JSON Schema.
topic = f"{prefix}-json"
roundtrip(
    "json", topic,
    JSONSerializer(JSON_V1, sr),
    JSONDeserializer(JSON_V1),
    lambda i: {"id": i, "item": f"item {i}", "qty": i % 7},
)
out["json"]["id"] = sr.get_latest_version(f"{topic}-value").schema_id
print(json.dumps(out))
