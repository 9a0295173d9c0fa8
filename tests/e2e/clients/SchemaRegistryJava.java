// kelp end-to-end client: Confluent's Java serializers (7.0.16) for Avro and Protobuf on the Apache
// Kafka Java client (4.3), against kelp's broker and kelp's schema registry.
//
//   java -cp "$KELP_CLIENTS_DIR/java-sr/*" SchemaRegistryJava.java BOOTSTRAP REGISTRY_URL PREFIX COUNT
//
// One source file, run by the JDK's source launcher; the jars come from scripts/install-clients.sh.
//
//   Avro      topic PREFIX-avro: COUNT GenericRecords of schema User v1 through KafkaAvroSerializer
//             (which registers v1 under PREFIX-avro-value), then COUNT records of User v2 (v1 and a
//             field `age` with a default, registered by the serializer as version 2). A consumer
//             with KafkaAvroDeserializer reads all 2*COUNT back (writer schemas fetched by id) and
//             each must equal what was sent; the v1 records are also read with v2 as the reader
//             schema and must come out with the default age. The registry client then asks which
//             version each schema is and what the subject's latest is.
//   Protobuf  topic PREFIX-proto: a .proto parsed at run time by ProtobufSchema (no protoc here),
//             importing google/protobuf/timestamp.proto (built into the serializers) and
//             kelp/e2e/money.proto (given as text); COUNT DynamicMessages through
//             KafkaProtobufSerializer, which registers money.proto under the subject
//             kelp/e2e/money.proto and then PREFIX-proto-value with a reference to it; read back
//             through KafkaProtobufDeserializer (which follows the reference) and compared field
//             by field.
//
// The schema ids are taken from the bytes the serializers wrote (magic byte 0, then the id).
// Exit 0 with one JSON line: {"avro":{...},"protobuf":{...}}; exit 1 with what differed.

import com.google.protobuf.Descriptors;
import com.google.protobuf.DynamicMessage;
import com.google.protobuf.Message;
import io.confluent.kafka.schemaregistry.avro.AvroSchema;
import io.confluent.kafka.schemaregistry.client.CachedSchemaRegistryClient;
import io.confluent.kafka.schemaregistry.client.SchemaMetadata;
import io.confluent.kafka.schemaregistry.protobuf.ProtobufSchema;
import io.confluent.kafka.serializers.KafkaAvroDeserializer;
import io.confluent.kafka.serializers.KafkaAvroSerializer;
import io.confluent.kafka.serializers.protobuf.KafkaProtobufDeserializer;
import io.confluent.kafka.serializers.protobuf.KafkaProtobufSerializer;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class SchemaRegistryJava {
    static final String USER_V1 = "{\"type\":\"record\",\"name\":\"User\",\"namespace\":\"kelp.e2e.java\",\"fields\":["
            + "{\"name\":\"id\",\"type\":\"long\"},"
            + "{\"name\":\"name\",\"type\":\"string\"},"
            + "{\"name\":\"email\",\"type\":[\"null\",\"string\"],\"default\":null},"
            + "{\"name\":\"score\",\"type\":\"double\"},"
            + "{\"name\":\"tags\",\"type\":{\"type\":\"array\",\"items\":\"string\"}}]}";
    // v1 plus a field with a default: BACKWARD compatible, so the serializer's registration of it
    // must be accepted as version 2 of the same subject.
    static final String USER_V2 = USER_V1.substring(0, USER_V1.length() - 2)
            + ",{\"name\":\"age\",\"type\":\"int\",\"default\":0}]}";

    static final String ORDER_PROTO = String.join("\n",
            "syntax = \"proto3\";",
            "package kelp.e2e.java;",
            "",
            "import \"google/protobuf/timestamp.proto\";",
            "import \"kelp/e2e/money.proto\";",
            "",
            "message Order {",
            "  int64 id = 1;",
            "  string item = 2;",
            "  repeated string tags = 3;",
            "  Line line = 4;",
            "  Status status = 5;",
            "  map<string, int32> counts = 6;",
            "  oneof payment {",
            "    string card = 7;",
            "    double cash = 8;",
            "  }",
            "  google.protobuf.Timestamp placed_at = 9;",
            "  kelp.e2e.money.Money total = 10;",
            "",
            "  message Line {",
            "    int32 qty = 1;",
            "    double price = 2;",
            "  }",
            "}",
            "",
            "enum Status {",
            "  STATUS_UNKNOWN = 0;",
            "  STATUS_OPEN = 1;",
            "  STATUS_SHIPPED = 2;",
            "}",
            "");

    // Imported by ORDER_PROTO under this name: the serializer registers it as a subject of its own
    // (named by the import) and the Order schema with a reference to it.
    static final String MONEY_IMPORT = "kelp/e2e/money.proto";
    static final String MONEY_PROTO = String.join("\n",
            "syntax = \"proto3\";",
            "package kelp.e2e.money;",
            "",
            "message Money {",
            "  string currency = 1;",
            "  int64 units = 2;",
            "}",
            "");

    static void fail(String what) {
        System.out.println("{\"error\":" + quote(what) + "}");
        System.out.flush();
        System.exit(1);
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
                    else b.append(c);
            }
        }
        return b.append('"').toString();
    }

    /** Hands values to the real serializer and notes the schema id at the front of each result. */
    static class IdNoting<T> implements Serializer<T> {
        static final TreeSet<Integer> AVRO = new TreeSet<>();
        static final TreeSet<Integer> PROTOBUF = new TreeSet<>();
        final Serializer<T> inner;
        final TreeSet<Integer> ids;

        IdNoting(Serializer<T> inner, TreeSet<Integer> ids) {
            this.inner = inner;
            this.ids = ids;
        }

        @Override
        public void configure(Map<String, ?> configs, boolean isKey) {
            inner.configure(configs, isKey);
        }

        @Override
        public byte[] serialize(String topic, T value) {
            byte[] out = inner.serialize(topic, value);
            if (out == null || out.length < 5 || out[0] != 0) {
                throw new IllegalStateException("the serializer wrote no Confluent framing: "
                        + (out == null ? "null" : out.length + " bytes"));
            }
            synchronized (ids) {
                ids.add(ByteBuffer.wrap(out, 1, 4).getInt());
            }
            return out;
        }

        @Override
        public void close() {
            inner.close();
        }
    }

    static Map<String, Object> serdeConfig(String registry) {
        Map<String, Object> c = new HashMap<>();
        c.put("schema.registry.url", registry);
        c.put("auto.register.schemas", true);
        return c;
    }

    static <T> void produce(String boot, String topic, Serializer<T> values, List<T> records) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, boot);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
        try (KafkaProducer<String, T> producer = new KafkaProducer<>(p, new StringSerializer(), values)) {
            List<Future<?>> acks = new ArrayList<>();
            for (int i = 0; i < records.size(); i++) {
                acks.add(producer.send(new ProducerRecord<>(topic, 0, "k" + i, records.get(i))));
            }
            producer.flush();
            for (Future<?> f : acks) f.get(60, TimeUnit.SECONDS);
        }
    }

    /** Everything in partition 0 of `topic`, values through `values`, until `want` arrived. */
    static <T> List<T> consume(String boot, String topic, Deserializer<T> values, int want) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, boot);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        List<T> got = new ArrayList<>();
        try (KafkaConsumer<String, T> consumer = new KafkaConsumer<>(p, new StringDeserializer(), values)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (got.size() < want && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, T> r : consumer.poll(Duration.ofMillis(500))) {
                    if (r.offset() != got.size()) fail(topic + ": offset " + r.offset() + " after " + got.size() + " records");
                    got.add(r.value());
                }
            }
        }
        if (got.size() != want) fail(topic + ": read " + got.size() + " records, want " + want);
        return got;
    }

    static GenericRecord user(Schema schema, int i) {
        GenericRecord r = new GenericData.Record(schema);
        r.put("id", 1_000_000_000_000L + i);
        r.put("name", "user-" + i + (i % 7 == 0 ? "-\u00e9\u4e16" : ""));
        r.put("email", i % 3 == 0 ? null : "u" + i + "@example.com");
        r.put("score", i * 1.25);
        List<String> tags = new ArrayList<>();
        for (int t = 0; t < i % 4; t++) tags.add("t" + t);
        r.put("tags", tags);
        if (schema.getField("age") != null) r.put("age", 20 + i % 50);
        return r;
    }

    /** A record's fields as plain Java values (Avro hands strings back as Utf8). */
    static Map<String, Object> plain(GenericRecord r) {
        Map<String, Object> m = new HashMap<>();
        for (Schema.Field f : r.getSchema().getFields()) {
            Object v = r.get(f.name());
            if (v instanceof CharSequence) v = v.toString();
            if (v instanceof List) {
                List<Object> l = new ArrayList<>();
                for (Object o : (List<?>) v) l.add(o instanceof CharSequence ? o.toString() : o);
                v = l;
            }
            m.put(f.name(), v);
        }
        return m;
    }

    /** A message's set fields by name: nested messages as maps, enums by name, lists kept in order. */
    static Map<String, Object> plain(Message m) {
        Map<String, Object> out = new TreeMap<>();
        for (Map.Entry<Descriptors.FieldDescriptor, Object> e : m.getAllFields().entrySet()) {
            out.put(e.getKey().getName(), plainValue(e.getValue()));
        }
        return out;
    }

    static Object plainValue(Object v) {
        if (v instanceof Message) return plain((Message) v);
        if (v instanceof Descriptors.EnumValueDescriptor) return ((Descriptors.EnumValueDescriptor) v).getName();
        if (v instanceof List) {
            List<Object> l = new ArrayList<>();
            for (Object o : (List<?>) v) l.add(plainValue(o));
            return l;
        }
        return v;
    }

    static DynamicMessage order(Descriptors.Descriptor d, int i) {
        Descriptors.Descriptor line = d.findNestedTypeByName("Line");
        Descriptors.EnumDescriptor status = d.getFile().findEnumTypeByName("Status");
        DynamicMessage.Builder b = DynamicMessage.newBuilder(d)
                .setField(d.findFieldByName("id"), 5_000_000_000L + i)
                .setField(d.findFieldByName("item"), "item-" + i)
                .setField(d.findFieldByName("status"), status.findValueByNumber(i % 3));
        for (int t = 0; t < i % 3; t++) b.addRepeatedField(d.findFieldByName("tags"), "tag" + t);
        if (i % 2 == 0) {
            b.setField(d.findFieldByName("line"), DynamicMessage.newBuilder(line)
                    .setField(line.findFieldByName("qty"), i)
                    .setField(line.findFieldByName("price"), i / 4.0)
                    .build());
        }
        Descriptors.FieldDescriptor counts = d.findFieldByName("counts");
        Descriptors.Descriptor entry = counts.getMessageType();
        for (int k = 0; k < i % 2 + 1; k++) {
            b.addRepeatedField(counts, DynamicMessage.newBuilder(entry)
                    .setField(entry.findFieldByName("key"), "c" + k)
                    .setField(entry.findFieldByName("value"), i + k)
                    .build());
        }
        Descriptors.FieldDescriptor placedAt = d.findFieldByName("placed_at");
        Descriptors.Descriptor ts = placedAt.getMessageType();
        b.setField(placedAt, DynamicMessage.newBuilder(ts)
                .setField(ts.findFieldByName("seconds"), 1_700_000_000L + i)
                .setField(ts.findFieldByName("nanos"), i * 1000)
                .build());
        Descriptors.FieldDescriptor total = d.findFieldByName("total");
        Descriptors.Descriptor money = total.getMessageType();
        b.setField(total, DynamicMessage.newBuilder(money)
                .setField(money.findFieldByName("currency"), i % 2 == 0 ? "EUR" : "NZD")
                .setField(money.findFieldByName("units"), 100L * i)
                .build());
        if (i % 3 == 1) b.setField(d.findFieldByName("card"), "card-" + i);
        if (i % 3 == 2) b.setField(d.findFieldByName("cash"), i + 0.5);
        return b.build();
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: java -cp 'JARS/*' SchemaRegistryJava.java BOOTSTRAP REGISTRY_URL PREFIX COUNT");
            System.exit(2);
        }
        String boot = args[0], registry = args[1], prefix = args[2];
        int n = Integer.parseInt(args[3]);
        String avroTopic = prefix + "-avro", protoTopic = prefix + "-proto";

        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, boot);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(avroTopic, 1, (short) 1), new NewTopic(protoTopic, 1, (short) 1)))
                    .all().get(30, TimeUnit.SECONDS);
        }

        // ---- Avro: v1, then v2 on the same topic ----
        Schema v1 = new Schema.Parser().parse(USER_V1);
        Schema v2 = new Schema.Parser().parse(USER_V2);
        List<Object> sentV1 = new ArrayList<>(), sentV2 = new ArrayList<>();
        for (int i = 0; i < n; i++) sentV1.add(user(v1, i));
        for (int i = 0; i < n; i++) sentV2.add(user(v2, n + i));

        IdNoting<Object> avroSer = new IdNoting<>(new KafkaAvroSerializer(), IdNoting.AVRO);
        avroSer.configure(serdeConfig(registry), false);
        produce(boot, avroTopic, avroSer, sentV1);
        if (IdNoting.AVRO.size() != 1) fail("the v1 records carry schema ids " + IdNoting.AVRO);
        int idV1 = IdNoting.AVRO.first();
        IdNoting.AVRO.clear();
        produce(boot, avroTopic, avroSer, sentV2);
        if (IdNoting.AVRO.size() != 1) fail("the v2 records carry schema ids " + IdNoting.AVRO);
        int idV2 = IdNoting.AVRO.first();
        if (idV1 == idV2) fail("v1 and v2 got the same schema id " + idV1);

        KafkaAvroDeserializer avroDe = new KafkaAvroDeserializer();
        avroDe.configure(serdeConfig(registry), false);
        List<Object> readAvro = consume(boot, avroTopic, avroDe, 2 * n);
        for (int i = 0; i < 2 * n; i++) {
            GenericRecord want = (GenericRecord) (i < n ? sentV1.get(i) : sentV2.get(i - n));
            GenericRecord got = (GenericRecord) readAvro.get(i);
            if (!got.getSchema().equals(want.getSchema())) {
                fail("avro record " + i + " came back with schema " + got.getSchema() + ", sent with " + want.getSchema());
            }
            if (!plain(got).equals(plain(want))) fail("avro record " + i + ": sent " + plain(want) + ", read " + plain(got));
        }

        // The v1 records through a deserializer given v2 as the reader schema: Avro resolution with
        // the writer schema the registry returns for the v1 id, the new field taking its default.
        List<byte[]> raw = consume(boot, avroTopic, new ByteArrayDeserializer(), 2 * n);
        KafkaAvroDeserializer oldReader = new KafkaAvroDeserializer();
        oldReader.configure(serdeConfig(registry), false);
        int resolved = 0;
        for (int i = 0; i < n; i++) {
            GenericRecord got = (GenericRecord) oldReader.deserialize(avroTopic, raw.get(i), v2);
            Map<String, Object> want = plain((GenericRecord) sentV1.get(i));
            want.put("age", 0);
            if (!plain(got).equals(want)) fail("v1 record " + i + " read as v2: want " + want + ", read " + plain(got));
            resolved++;
        }

        CachedSchemaRegistryClient sr = new CachedSchemaRegistryClient(registry, 100);
        String avroSubject = avroTopic + "-value";
        int versionV1 = sr.getVersion(avroSubject, new AvroSchema(v1));
        int versionV2 = sr.getVersion(avroSubject, new AvroSchema(v2));
        SchemaMetadata latest = sr.getLatestSchemaMetadata(avroSubject);
        if (latest.getId() != idV2 || latest.getVersion() != versionV2) {
            fail("latest of " + avroSubject + " is id " + latest.getId() + " version " + latest.getVersion()
                    + ", the serializer registered id " + idV2 + " as version " + versionV2);
        }
        if (sr.getId(avroSubject, new AvroSchema(v1)) != idV1) fail("registry lookup of v1 disagrees with id " + idV1);

        // ---- Protobuf: a message type built at run time from .proto text ----
        ProtobufSchema parsed = new ProtobufSchema(ORDER_PROTO, List.of(), Map.of(MONEY_IMPORT, MONEY_PROTO), null, null);
        Descriptors.Descriptor orderType = parsed.toDescriptor("Order");
        if (orderType == null) fail("ProtobufSchema found no message Order");
        List<Message> sentProto = new ArrayList<>();
        for (int i = 0; i < n; i++) sentProto.add(order(orderType, i));
        IdNoting<Message> protoSer = new IdNoting<>(new KafkaProtobufSerializer<>(), IdNoting.PROTOBUF);
        protoSer.configure(serdeConfig(registry), false);
        produce(boot, protoTopic, protoSer, sentProto);
        if (IdNoting.PROTOBUF.size() != 1) fail("the protobuf records carry schema ids " + IdNoting.PROTOBUF);
        int idProto = IdNoting.PROTOBUF.first();

        KafkaProtobufDeserializer<Message> protoDe = new KafkaProtobufDeserializer<>();
        protoDe.configure(serdeConfig(registry), false);
        List<Message> readProto = consume(boot, protoTopic, protoDe, n);
        for (int i = 0; i < n; i++) {
            Message want = sentProto.get(i), got = readProto.get(i);
            // The read message's descriptor is rebuilt from the registry's text, so the messages
            // are compared by field names and values, and by their wire bytes.
            if (!got.getDescriptorForType().getFullName().equals("kelp.e2e.java.Order")) {
                fail("protobuf record " + i + " came back as " + got.getDescriptorForType().getFullName());
            }
            if (!plain(got).equals(plain(want)) || !got.toByteString().equals(want.toByteString())) {
                fail("protobuf record " + i + ": sent " + plain(want) + ", read " + plain(got));
            }
        }
        SchemaMetadata protoLatest = sr.getLatestSchemaMetadata(protoTopic + "-value");
        if (protoLatest.getId() != idProto || !"PROTOBUF".equals(protoLatest.getSchemaType())) {
            fail("latest of " + protoTopic + "-value is id " + protoLatest.getId() + " type "
                    + protoLatest.getSchemaType() + ", the serializer used id " + idProto);
        }

        System.out.println("{\"avro\":{\"records_v1\":" + n + ",\"records_v2\":" + n
                + ",\"id_v1\":" + idV1 + ",\"id_v2\":" + idV2
                + ",\"version_v1\":" + versionV1 + ",\"version_v2\":" + versionV2
                + ",\"v1_read_as_v2\":" + resolved + "},"
                + "\"protobuf\":{\"records\":" + n + ",\"id\":" + idProto + "}}");
    }
}
