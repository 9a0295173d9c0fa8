// kelp end-to-end client: the Apache Kafka Java producer (4.3) with Confluent's Avro serializer
// (7.0.16) against topics on which kelp validates schema ids at the broker.
//
//   java -cp "$KELP_CLIENTS_DIR/java-sr/*" SchemaTopicsJava.java BOOTSTRAP REGISTRY_URL PREFIX COUNT
//
// Topics, made through the Admin client with their configs:
//   PREFIX-tn  confluent.value.schema.validation=true (the subject: PREFIX-tn-value)
//   PREFIX-rn  the same plus confluent.value.subject.name.strategy=RecordNameStrategy's class name
//              (the subject: the Avro record's full name)
//
// What it does, each step reported in the one JSON line printed at the end:
//   tn        COUNT GenericRecords through KafkaAvroSerializer (which registers the schema), every
//             send's future must complete; then a byte[] value through ByteArraySerializer, whose
//             future fails: the exception's class and message, and those of its causes; the same
//             for a byte[] framed like the serializer's output but with schema id 9000, and (after
//             the rn step) for one framed with the id the stray record registered elsewhere.
//   rn        COUNT records through a KafkaAvroSerializer configured with the same strategy, so it
//             registers under the record name; then one record of another type through a
//             serializer left on the default TopicNameStrategy, which registers it under
//             PREFIX-rn-value, a subject the topic's strategy never asks for: its send fails.
//   read      KafkaAvroDeserializer reads each topic from the start to its end offset.
// Exit 0 with the JSON line; exit 1 only when something did not happen at all.

import io.confluent.kafka.schemaregistry.client.CachedSchemaRegistryClient;
import io.confluent.kafka.serializers.KafkaAvroDeserializer;
import io.confluent.kafka.serializers.KafkaAvroSerializer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
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
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class SchemaTopicsJava {
    static final String RECORD_NAME_STRATEGY = "io.confluent.kafka.serializers.subject.RecordNameStrategy";
    static final Schema READING = new Schema.Parser().parse(
            "{\"type\":\"record\",\"name\":\"Reading\",\"namespace\":\"kelp.e2e.topics\",\"fields\":["
                    + "{\"name\":\"sensor\",\"type\":\"string\"},{\"name\":\"celsius\",\"type\":\"double\"}]}");
    static final Schema STRAY = new Schema.Parser().parse(
            "{\"type\":\"record\",\"name\":\"Stray\",\"namespace\":\"kelp.e2e.topics\",\"fields\":["
                    + "{\"name\":\"n\",\"type\":\"int\"}]}");

    static void fail(String what) {
        System.out.println("{\"error\":" + quote(what) + "}");
        System.out.flush();
        System.exit(1);
    }

    static String quote(String s) {
        if (s == null) return "null";
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

    static GenericRecord reading(int i) {
        GenericRecord r = new GenericData.Record(READING);
        r.put("sensor", "s-" + i);
        r.put("celsius", 20.5 + i);
        return r;
    }

    static Map<String, Object> serdeConfig(String registry, String strategy) {
        Map<String, Object> c = new HashMap<>();
        c.put("schema.registry.url", registry);
        c.put("auto.register.schemas", true);
        if (strategy != null) c.put("value.subject.name.strategy", strategy);
        return c;
    }

    static <V> KafkaProducer<String, V> producer(String boot, Serializer<V> values) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, boot);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 0);
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
        return new KafkaProducer<>(p, new StringSerializer(), values);
    }

    /** Sends each value and waits for every acknowledgement; how many were acknowledged. */
    static <V> int sendAll(String boot, String topic, Serializer<V> values, List<V> records) throws Exception {
        try (KafkaProducer<String, V> producer = producer(boot, values)) {
            List<Future<RecordMetadata>> acks = new ArrayList<>();
            for (int i = 0; i < records.size(); i++) {
                acks.add(producer.send(new ProducerRecord<>(topic, 0, "k" + i, records.get(i))));
            }
            producer.flush();
            int ok = 0;
            for (Future<RecordMetadata> f : acks) {
                f.get(60, TimeUnit.SECONDS);
                ok++;
            }
            return ok;
        }
    }

    /** Sends one value that must be refused; the JSON of how its future failed. */
    static <V> String sendRefused(String boot, String topic, Serializer<V> values, V value) throws Exception {
        try (KafkaProducer<String, V> producer = producer(boot, values)) {
            Future<RecordMetadata> f = producer.send(new ProducerRecord<>(topic, 0, "bad", value));
            producer.flush();
            try {
                RecordMetadata m = f.get(60, TimeUnit.SECONDS);
                return "{\"accepted_at\":" + m.offset() + "}";
            } catch (ExecutionException e) {
                StringBuilder chain = new StringBuilder("[");
                for (Throwable t = e.getCause(); t != null; t = t.getCause()) {
                    if (chain.length() > 1) chain.append(',');
                    chain.append("{\"class\":").append(quote(t.getClass().getName()))
                            .append(",\"message\":").append(quote(t.getMessage())).append('}');
                    if (t.getCause() == t) break;
                }
                return "{\"causes\":" + chain.append(']') + "}";
            }
        }
    }

    /** Every value of partition 0 of `topic`, from offset 0 to the end offset, as text. */
    static String readAll(String boot, String registry, String topic) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, boot);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        KafkaAvroDeserializer values = new KafkaAvroDeserializer();
        values.configure(Map.of("schema.registry.url", registry), false);
        List<String> got = new ArrayList<>();
        long end;
        try (KafkaConsumer<String, Object> consumer = new KafkaConsumer<>(p, new StringDeserializer(), values)) {
            TopicPartition tp = new TopicPartition(topic, 0);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            end = consumer.endOffsets(List.of(tp)).get(tp);
            long next = 0;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (next < end && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, Object> r : consumer.poll(Duration.ofMillis(500))) {
                    got.add(quote(String.valueOf(r.value())));
                    next = r.offset() + 1;
                }
            }
        }
        return "{\"end_offset\":" + end + ",\"values\":[" + String.join(",", got) + "]}";
    }

    public static void main(String[] args) throws Exception {
        String boot = args[0], registry = args[1], prefix = args[2];
        int count = Integer.parseInt(args[3]);
        String tn = prefix + "-tn", rn = prefix + "-rn";

        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, boot);
        try (Admin admin = Admin.create(ap)) {
            NewTopic byTopic = new NewTopic(tn, 1, (short) 1)
                    .configs(Map.of("confluent.value.schema.validation", "true"));
            NewTopic byRecord = new NewTopic(rn, 1, (short) 1).configs(Map.of(
                    "confluent.value.schema.validation", "true",
                    "confluent.value.subject.name.strategy", RECORD_NAME_STRATEGY));
            admin.createTopics(List.of(byTopic, byRecord)).all().get(30, TimeUnit.SECONDS);
        }

        List<Object> readings = new ArrayList<>();
        for (int i = 0; i < count; i++) readings.add(reading(i));

        KafkaAvroSerializer topicNamed = new KafkaAvroSerializer();
        topicNamed.configure(serdeConfig(registry, null), false);
        int tnAccepted = sendAll(boot, tn, topicNamed, readings);
        String raw = sendRefused(boot, tn, new ByteArraySerializer(), "{\"sensor\":\"raw\"}".getBytes("UTF-8"));
        // Framed as the serializer frames, but with an id the registry never gave out.
        byte[] unknown = {0, 0, 0, 0x23, 0x28, 2, 'x'};
        String unknownId = sendRefused(boot, tn, new ByteArraySerializer(), unknown);

        KafkaAvroSerializer recordNamed = new KafkaAvroSerializer();
        recordNamed.configure(serdeConfig(registry, RECORD_NAME_STRATEGY), false);
        int rnAccepted = sendAll(boot, rn, recordNamed, readings);
        GenericRecord stray = new GenericData.Record(STRAY);
        stray.put("n", 7);
        KafkaAvroSerializer strayNamed = new KafkaAvroSerializer();
        strayNamed.configure(serdeConfig(registry, null), false);
        String strayOutcome = sendRefused(boot, rn, strayNamed, (Object) stray);

        CachedSchemaRegistryClient client = new CachedSchemaRegistryClient(registry, 10);
        // The stray record's id is real but held only by PREFIX-rn-value: framed, it must not
        // pass on PREFIX-tn either.
        int strayId = client.getLatestSchemaMetadata(rn + "-value").getId();
        byte[] elsewhere = {0, (byte) (strayId >>> 24), (byte) (strayId >>> 16), (byte) (strayId >>> 8), (byte) strayId, 14};
        String otherSubject = sendRefused(boot, tn, new ByteArraySerializer(), elsewhere);
        TreeSet<String> subjects = new TreeSet<>(client.getAllSubjects());
        StringBuilder subjectsJson = new StringBuilder("[");
        for (String s : subjects) {
            if (subjectsJson.length() > 1) subjectsJson.append(',');
            subjectsJson.append(quote(s));
        }
        subjectsJson.append(']');

        System.out.println("{\"tn\":{\"accepted\":" + tnAccepted + ",\"raw\":" + raw + ",\"unknown_id\":" + unknownId
                + ",\"other_subject\":" + otherSubject + ",\"stray_id\":" + strayId
                + ",\"read\":" + readAll(boot, registry, tn) + "},\"rn\":{\"accepted\":" + rnAccepted + ",\"stray\":"
                + strayOutcome + ",\"read\":" + readAll(boot, registry, rn) + "},\"subjects\":" + subjectsJson
                + "}");
        System.out.flush();
        System.exit(0);
    }
}
