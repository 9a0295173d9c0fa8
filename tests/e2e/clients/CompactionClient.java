// kelp end-to-end client for log compaction (issue 18): the Apache Kafka Java consumer
// (kafka-clients 4.3), in a process of its own.
//
//   java -cp "$KELP_CLIENTS_DIR/java/*" CompactionClient.java --bootstrap 127.0.0.1:9092 \
//       --topic t [--max-records N] [--timeout 120]
//
// A fresh consumer (assign + seekToBeginning, no group.id, no commits) reads partition 0 of the
// topic from the beginning until its position reaches the end offset read first (compaction
// leaves gaps: the position, not the last record's offset, says when the end is reached), and
// prints one JSON line per record, [offset, key, value or null, timestamp], then the summary
// {"summary": "read", "records": n, "high_watermark": h}. More than --max-records records is a
// failure (the log was not compacted). compaction_client.py --mode read prints the same lines;
// tests/tests/e2e_compaction/cleaning.rs checks them.
//
// Exit 0 with the summary last; exit 1 with a line starting with FAIL: on stderr.

import java.io.BufferedWriter;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.AppInfoParser;

public class CompactionClient {
    static volatile String step = "starting";

    public static void main(String[] argv) throws Exception {
        System.setProperty("slf4j.internal.verbosity", "ERROR");
        String bootstrap = null, topic = null;
        long maxRecords = 100_000;
        double timeout = 120;
        for (int i = 0; i + 1 < argv.length; i += 2) {
            switch (argv[i]) {
                case "--bootstrap" -> bootstrap = argv[i + 1];
                case "--topic" -> topic = argv[i + 1];
                case "--max-records" -> maxRecords = Long.parseLong(argv[i + 1]);
                case "--timeout" -> timeout = Double.parseDouble(argv[i + 1]);
                default -> fail("unknown argument " + argv[i]);
            }
        }
        if (bootstrap == null || topic == null || argv.length % 2 != 0) {
            fail("usage: CompactionClient.java --bootstrap HOST:PORT --topic NAME [--max-records N] [--timeout S]");
        }
        final double limit = timeout;
        Thread dog = new Thread(() -> {
            try {
                Thread.sleep((long) (limit * 1000));
            } catch (InterruptedException e) {
                return;
            }
            fail("timed out after " + limit + "s during: " + step);
        }, "watchdog");
        dog.setDaemon(true);
        dog.start();
        try {
            read(bootstrap, topic, maxRecords);
        } catch (Exception e) {
            fail(step + ": " + e.getClass().getSimpleName() + ": " + e.getMessage());
        }
    }

    static void read(String bootstrap, String topic, long maxRecords) throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "kelp-e2e-java-compaction");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        TopicPartition tp = new TopicPartition(topic, 0);
        BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.UTF_8), 1 << 16);
        long n = 0, end;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            step = "reading the end offset";
            end = consumer.endOffsets(List.of(tp), Duration.ofSeconds(30)).get(tp);
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            step = "reading partition 0 up to " + end;
            while (consumer.position(tp, Duration.ofSeconds(30)) < end) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    out.write("[" + r.offset() + "," + quote(r.key()) + "," + quote(r.value()) + "," + r.timestamp() + "]\n");
                    if (++n > maxRecords) fail("more than " + maxRecords + " records below " + end + ": the log is not compacted");
                }
            }
        }
        out.write("{\"summary\": \"read\", \"client\": \"kafka-clients " + AppInfoParser.getVersion() + "\", \"records\": " + n
                + ", \"high_watermark\": " + end + "}\n");
        out.flush();
        System.exit(0);
    }

    /** A JSON string of the bytes (the test's keys and values are ASCII), or null. */
    static String quote(byte[] b) {
        if (b == null) return "null";
        String s = new String(b, StandardCharsets.UTF_8);
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static synchronized void fail(String msg) {
        System.out.flush();
        System.err.println("FAIL: " + msg);
        System.err.flush();
        Runtime.getRuntime().halt(1);
    }
}
