"""confluent-kafka (librdkafka) producing to topics that validate schema ids at the broker.

  schema_topics_client.py BOOTSTRAP REGISTRY_URL TOPIC_PREFIX

Topics (made with the AdminClient, the validation switched on in NewTopic's config):
  PREFIX-values  confluent.value.schema.validation=true
  PREFIX-keys    confluent.key.schema.validation=true
  PREFIX-decoded confluent.value.schema.validation=true, kelp.value.schema.validation.mode=payload

On PREFIX-values: records from the AvroSerializer (which registers the schema under
PREFIX-values-value) are accepted; then three values, each produced and flushed alone so that
each is a batch of one, must each fail delivery: plain JSON bytes (not framed), a framed value
with an id the registry never gave out, and a framed value with the id of a schema registered
only under another subject. One more good record follows. A consumer then reads the partition
from offset 0 to its end and deserializes every record.

On PREFIX-keys: a record with no key and a record whose key the AvroSerializer framed are
accepted, a plain-bytes key is refused, and a consumer reads back the accepted two.

On PREFIX-decoded: serializer records are accepted; a framed value with the right id whose
Avro body is cut short, and one with a byte too many, are refused (the id alone would pass).

Prints one JSON line with what it saw (delivery outcomes with error code and text, what was
read back); the Rust test judges it. The text of a failed delivery is librdkafka's description
of the code: confluent-kafka does not pass on the message the broker sent with it. Exits 1 only when something did not happen at all (a
topic not created, a flush that never finished).
"""
import json
import struct
import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

boot, url, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
values_topic, keys_topic = f"{prefix}-values", f"{prefix}-keys"
sr = SchemaRegistryClient({"url": url})
out = {"invalid_record_code": KafkaError.INVALID_RECORD}

EVENT = json.dumps({
    "type": "record", "name": "Event", "namespace": "kelp.e2e.topics",
    "fields": [{"name": "id", "type": "long"}, {"name": "what", "type": "string"}],
})
# Registered under a subject no topic uses: its id is real but wrong for PREFIX-values.
OTHER = json.dumps({
    "type": "record", "name": "Elsewhere", "namespace": "kelp.e2e.topics",
    "fields": [{"name": "n", "type": "int"}],
})


def fail(msg):
    print(json.dumps({"error": msg, "seen": out}))
    sys.exit(1)


# ---- topics, through the AdminClient --------------------------------------------------------
admin = AdminClient({"bootstrap.servers": boot})
new = [
    NewTopic(values_topic, 1, 1, config={"confluent.value.schema.validation": "true"}),
    NewTopic(keys_topic, 1, 1, config={"confluent.key.schema.validation": "true"}),
    NewTopic(f"{prefix}-decoded", 1, 1, config={"confluent.value.schema.validation": "true",
                                                  "kelp.value.schema.validation.mode": "payload"}),
]
for topic, fut in admin.create_topics(new, operation_timeout=30).items():
    try:
        fut.result(30)
    except Exception as e:  # noqa: BLE001 - reported as is
        fail(f"creating {topic}: {e}")
configs = {}
for res, fut in admin.describe_configs([ConfigResource("TOPIC", values_topic),
                                        ConfigResource("TOPIC", keys_topic)]).items():
    entries = fut.result(30)
    configs[res.name] = {k: v.value for k, v in entries.items() if "schema" in k}
out["configs"] = configs


# ---- producing, one batch per record ----------------------------------------------------------
producer = Producer({"bootstrap.servers": boot, "linger.ms": 0, "message.timeout.ms": 30000})


def send(topic, value, key=None):
    """Produces one record and flushes, so it travels as a batch of its own; its outcome."""
    seen = []

    def report(err, msg):
        if err is None:
            seen.append({"ok": True, "offset": msg.offset()})
        else:
            seen.append({"ok": False, "code": err.code(), "name": err.name(), "text": err.str(),
                         "retriable": err.retriable(), "fatal": err.fatal()})

    producer.produce(topic, value=value, key=key, partition=0, on_delivery=report)
    if producer.flush(60) != 0 or len(seen) != 1:
        fail(f"no delivery report for a record to {topic}")
    return seen[0]


def framed(schema_id, payload):
    """Confluent's wire format: magic byte 0, the id big-endian, then the payload."""
    return b"\x00" + struct.pack(">i", schema_id) + payload


serializer = AvroSerializer(sr, EVENT)  # registers on first use (auto.register.schemas)
ctx = SerializationContext(values_topic, MessageField.VALUE)
good = [{"id": i, "what": f"event {i}"} for i in range(4)]
accepted = [send(values_topic, serializer(good[i], ctx)) for i in range(3)]
event_id = sr.get_latest_version(f"{values_topic}-value").schema_id
out["event_schema_id"] = event_id
# The Avro body of a good record, to put behind ids that must not pass.
body = serializer(good[0], ctx)[5:]

other_id = sr.register_schema(f"{prefix}-elsewhere", Schema(OTHER, "AVRO"))
out["other_schema_id"] = other_id
unknown_id = 9000 + other_id
out["unknown_schema_id"] = unknown_id
out["refused"] = {
    "unframed": send(values_topic, json.dumps(good[0]).encode()),
    "unknown_id": send(values_topic, framed(unknown_id, body)),
    "other_subject": send(values_topic, framed(other_id, body)),
}
accepted.append(send(values_topic, serializer(good[3], ctx)))
out["accepted"] = accepted


def read_all(topic):
    """Every record of partition 0, from offset 0 to the end the broker reports."""
    c = Consumer({"bootstrap.servers": boot, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    _, end = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    c.assign([TopicPartition(topic, 0, 0)])
    got, deadline = [], time.time() + 60
    while (not got or got[-1].offset() < end - 1) and time.time() < deadline:
        for m in c.consume(100, 1.0):
            if m.error():
                fail(f"consuming {topic}: {m.error()}")
            got.append(m)
    c.close()
    return end, got


end, got = read_all(values_topic)
deserializer = AvroDeserializer(sr)
out["values_read"] = {
    "end_offset": end,
    "offsets": [m.offset() for m in got],
    "records": [deserializer(m.value(), ctx) for m in got],
    "schema_ids": [struct.unpack(">i", m.value()[1:5])[0] for m in got],
    "sent": good,
}

# ---- key validation ---------------------------------------------------------------------------
key_serializer = AvroSerializer(sr, json.dumps({"type": "string"}))
key_ctx = SerializationContext(keys_topic, MessageField.KEY)
out["keys"] = {
    "null_key": send(keys_topic, b"no key at all"),
    "framed_key": send(keys_topic, b"an Avro key", key=key_serializer("user-7", key_ctx)),
    "unframed_key": send(keys_topic, b"a plain key", key=b"user-7"),
}
end, got = read_all(keys_topic)
key_deserializer = AvroDeserializer(sr)
out["keys_read"] = {
    "end_offset": end,
    "records": [[None if m.key() is None else key_deserializer(m.key(), key_ctx), m.value().decode()]
                for m in got],
}

# ---- payload mode -------------------------------------------------------------------------------
decoded_topic = f"{prefix}-decoded"
decoded_ctx = SerializationContext(decoded_topic, MessageField.VALUE)
decoded_serializer = AvroSerializer(sr, EVENT)
first = decoded_serializer(good[0], decoded_ctx)
out["decoded"] = {
    "good": send(decoded_topic, first),
    "cut_short": send(decoded_topic, first[:-2]),
    "one_too_many": send(decoded_topic, first + b"\x00"),
    "good_again": send(decoded_topic, decoded_serializer(good[1], decoded_ctx)),
}
print(json.dumps(out))
