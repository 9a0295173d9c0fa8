// Produce throughput at a given acks, with the Apache Kafka Java client (kafka-clients 4.3), for
// scripts/bench-acks-seaweedmq.sh: how much of acks=1's throughput acks=all keeps when acks=all
// is answered only once the store has made the records durable (on SeaweedMQ, about a second).
//
//   java -cp "$KELP_CLIENTS_DIR/java/*" scripts/bench/AcksLoad.java --bootstrap 127.0.0.1:9092 \
//       --topic t --acks 1|all [--producers 4] [--partitions 4] [--seconds 20] [--size 100]
//       [--batch-bytes 1048576] [--linger-ms 20]
//
// Closed loop: each of the --producers threads (one KafkaProducer each, so one connection each)
// sends records of --size bytes round-robin over the topic's first --partitions partitions as
// fast as send() takes them, for --seconds; send() blocks once the client's buffer is full, so
// the rate is what the broker sustains. With acks=all the producer is idempotent (the client's
// default) and keeps max.in.flight.requests.per.connection=5 requests in flight per connection,
// Kafka's limit for idempotence; with acks=1 idempotence is off (it needs acks=all) and the same
// 5 requests are in flight. Large batches (--batch-bytes, --linger-ms) let each request carry
// many records.
//
// Prints one JSON line: records acknowledged per second (counted from the first send to the last
// callback), p50 / p99 / max of send() -> callback in ms (a full client buffer's wait included),
// and failed sends.

import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class AcksLoad {
    static String arg(String[] args, String name, String dflt) {
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals(name)) {
                return args[i + 1];
            }
        }
        return dflt;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = arg(args, "--bootstrap", "127.0.0.1:9092");
        String topic = arg(args, "--topic", "acks");
        String acks = arg(args, "--acks", "all");
        int producers = Integer.parseInt(arg(args, "--producers", "4"));
        int partitions = Integer.parseInt(arg(args, "--partitions", "4"));
        long seconds = Long.parseLong(arg(args, "--seconds", "20"));
        int size = Integer.parseInt(arg(args, "--size", "100"));
        int batchBytes = Integer.parseInt(arg(args, "--batch-bytes", "1048576"));
        int lingerMs = Integer.parseInt(arg(args, "--linger-ms", "20"));

        // Latencies in ms, bucketed by the millisecond (up to 120 s), over every producer.
        int buckets = 120_001;
        AtomicLongArray hist = new AtomicLongArray(buckets);
        AtomicLong acked = new AtomicLong();
        AtomicLong failed = new AtomicLong();
        AtomicLong lastCallback = new AtomicLong();
        long start = System.nanoTime();
        long stopAt = start + seconds * 1_000_000_000L;
        Thread[] threads = new Thread[producers];
        for (int t = 0; t < producers; t++) {
            final int id = t;
            threads[t] = new Thread(() -> {
                Properties p = new Properties();
                p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
                p.put(ProducerConfig.ACKS_CONFIG, acks);
                p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, acks.equals("all") ? "true" : "false");
                p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
                p.put(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(batchBytes));
                p.put(ProducerConfig.LINGER_MS_CONFIG, Integer.toString(lingerMs));
                p.put(ProducerConfig.BUFFER_MEMORY_CONFIG, Long.toString(256L << 20));
                p.put(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, Integer.toString(Math.max(batchBytes, 1 << 20) + 4096));
                p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
                p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
                p.put(ProducerConfig.CLIENT_ID_CONFIG, "acks-load-" + id);
                byte[] value = new byte[size];
                Arrays.fill(value, (byte) 'x');
                try (KafkaProducer<byte[], byte[]> producer =
                        new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
                    long i = 0;
                    while (System.nanoTime() < stopAt) {
                        int partition = (int) ((i++ + id) % partitions);
                        long sent = System.nanoTime();
                        producer.send(new ProducerRecord<>(topic, partition, null, value), (md, e) -> {
                            long now = System.nanoTime();
                            if (e != null) {
                                failed.incrementAndGet();
                                return;
                            }
                            acked.incrementAndGet();
                            lastCallback.accumulateAndGet(now, Math::max);
                            int ms = (int) Math.min(buckets - 1, (now - sent) / 1_000_000L);
                            hist.incrementAndGet(ms);
                        });
                    }
                    producer.flush();
                }
            });
            threads[t].start();
        }
        for (Thread t : threads) {
            t.join();
        }
        long n = acked.get();
        double secs = (lastCallback.get() - start) / 1e9;
        System.out.printf(
            "{\"client\": \"java\", \"acks\": \"%s\", \"producers\": %d, \"partitions\": %d, \"acked\": %d, "
                + "\"failed\": %d, \"seconds\": %.2f, \"records_per_s\": %.0f, \"p50_ms\": %d, \"p99_ms\": %d, "
                + "\"max_ms\": %d}%n",
            acks, producers, partitions, n, failed.get(), secs, n / Math.max(secs, 1e-9),
            quantile(hist, n, 0.50), quantile(hist, n, 0.99), quantile(hist, n, 1.0));
    }

    static int quantile(AtomicLongArray hist, long n, double q) {
        long want = Math.max(1, (long) Math.ceil(n * q));
        long seen = 0;
        for (int i = 0; i < hist.length(); i++) {
            seen += hist.get(i);
            if (seen >= want) {
                return i;
            }
        }
        return hist.length() - 1;
    }
}
