"""confluent-kafka's schema registry client and serializers against kelp's broker and registry.

  schema_registry_client.py BOOTSTRAP REGISTRY_URL TOPIC_PREFIX COUNT

For Avro, JSON Schema and Protobuf: produces COUNT records through the format's serializer
(which registers the value schema), consumes them back through its deserializer, and checks
each record equals what was sent. Then checks what a registry user relies on: the registered
id, the subject's versions, a compatible evolution, an incompatible one refused with 409, a
serializer with `use.latest.version` writing with the subject's latest schema, and Protobuf
imports registered as references under their own subjects (the Protobuf serializer sends each
file as a base64 FileDescriptorProto and its deserializer reads them back with
`format=serialized`). Prints one JSON line with what it saw; exits 1 on the first mismatch.
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
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
# A serializer with use.latest.version and no schema of its own writes with the latest one.
# (A client of its own: `sr` still caches the latest version it was told before v2.)
latest_writer = AvroSerializer(SchemaRegistryClient({"url": url}), None,
                               conf={"auto.register.schemas": False, "use.latest.version": True})
ctx = SerializationContext(topic, MessageField.VALUE)
framed = latest_writer({"id": 8, "name": "y", "email": "y@example.com", "age": 40}, ctx)
if framed[0] != 0 or int.from_bytes(framed[1:5], "big") != v2_id:
    fail(f"avro: use.latest.version framed the record with id {int.from_bytes(framed[1:5], 'big')}, not {v2_id}")
if AvroDeserializer(sr)(framed, ctx) != {"id": 8, "name": "y", "email": "y@example.com", "age": 40}:
    fail("avro: the record written with the latest schema did not read back")
out["avro"]["latest_id"] = v2_id

# JSON Schema.
topic = f"{prefix}-json"
roundtrip(
    "json", topic,
    JSONSerializer(JSON_V1, sr),
    JSONDeserializer(JSON_V1),
    lambda i: {"id": i, "item": f"item {i}", "qty": i % 7},
)
out["json"]["id"] = sr.get_latest_version(f"{topic}-value").schema_id


# Protobuf: message types built at run time (no protoc here). Order imports Address from a file
# of its own, which the serializer registers first under the subject "kelp/address.proto" and
# names as a reference, and the well-known Timestamp, which it leaves out.
def proto_types():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    F = descriptor_pb2.FieldDescriptorProto
    address = descriptor_pb2.FileDescriptorProto(name="kelp/address.proto", package="kelp.e2e", syntax="proto3")
    m = address.message_type.add(name="Address")
    m.field.add(name="city", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    m.field.add(name="zip", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    order = descriptor_pb2.FileDescriptorProto(
        name="kelp/order.proto", package="kelp.e2e", syntax="proto3",
        dependency=["kelp/address.proto", "google/protobuf/timestamp.proto"])
    m = order.message_type.add(name="Order")
    m.field.add(name="id", number=1, type=F.TYPE_INT64, label=F.LABEL_OPTIONAL)
    m.field.add(name="ship_to", number=2, type=F.TYPE_MESSAGE, type_name=".kelp.e2e.Address",
                label=F.LABEL_OPTIONAL)
    m.field.add(name="items", number=3, type=F.TYPE_STRING, label=F.LABEL_REPEATED)
    m.field.add(name="placed", number=4, type=F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp",
                label=F.LABEL_OPTIONAL)
    pool.Add(address)
    pool.Add(order)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("kelp.e2e.Order"))


Order = proto_types()


def make_order(i):
    o = Order(id=i, items=[f"item {j}" for j in range(i % 3)])
    o.ship_to.city = f"city {i}"
    o.ship_to.zip = 1000 + i
    o.placed.seconds = 1_700_000_000 + i
    return o


topic = f"{prefix}-proto"
roundtrip(
    "protobuf", topic,
    ProtobufSerializer(Order, sr, {"use.deprecated.format": False}),
    ProtobufDeserializer(Order, {"use.deprecated.format": False}, sr),
    make_order,
)
latest = sr.get_latest_version(f"{topic}-value")
refs = [{"name": r.name, "subject": r.subject, "version": r.version} for r in latest.schema.references]
if refs != [{"name": "kelp/address.proto", "subject": "kelp/address.proto", "version": 1}]:
    fail(f"protobuf: the schema's references are {refs}")
address = sr.get_latest_version("kelp/address.proto")
out["protobuf"].update({"id": latest.schema_id, "address_id": address.schema_id, "references": refs})
# The registry keeps .proto text for what the serializer sent as a descriptor.
if "message Order" not in latest.schema.schema_str or "import \"kelp/address.proto\";" not in latest.schema.schema_str:
    fail(f"protobuf: the stored schema is {latest.schema.schema_str!r}")
print(json.dumps(out))
