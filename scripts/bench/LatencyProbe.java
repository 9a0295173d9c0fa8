// Produce-latency probe for scripts/bench.sh: the Apache Kafka Java client (kafka-clients 4.3)
// sends fixed-size records at a fixed total rate and times every send() -> callback.
//
//   java -cp "$KELP_CLIENTS_DIR/java/*" scripts/bench/LatencyProbe.java --bootstrap 127.0.0.1:9092 \
//       --topic t [--rate 10000] [--seconds 20] [--warmup 5] [--acks 1|all] [--producers 1]
//       [--size 100] [--raw FILE]
//
// The rate is open-loop: each of the --producers threads (one KafkaProducer each) owns
// rate/producers of it and sends record i at start + i * interval, whatever happened to the
// records before it; a thread that wakes late sends what is due at once, so the total rate holds
// while the client keeps up. Producer settings: linger.ms=0 (every record leaves as soon as the
// client's sender thread gets to it), the given acks (idempotence only with acks=all, the client's
// default there), everything else the client's defaults. Records sent during the first --warmup
// seconds (connection setup, metadata, the JIT) are not counted.
//
// Prints one line, key=value pairs: requested and achieved rate of the measured part (records
// counted over the time from when the first of them was due to the last callback, so a backlog
// in the client, or a send() that blocks on a full buffer, lowers it), records counted, p50 / p99 / p99.9 / max in microseconds,
// failed sends, and "sustained=yes|no" (no: the achieved rate is under 98% of the requested one,
// or some sends failed). --raw FILE also writes every counted latency, one per line, in ns.

import java.io.FileWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class LatencyProbe {
    static String arg(String[] args, String name, String dflt) {
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals(name)) {
                return args[i + 1];
            }
        }
        if (dflt == null) {
            System.err.println("missing " + name);
            System.exit(2);
        }
        return dflt;
    }

    /** One producer thread: its schedule, and the latencies of its counted records. */
    static final class Lane implements Runnable {
        final KafkaProducer<byte[], byte[]> producer;
        final String topic;
        final byte[] value;
        final long intervalNs;
        final long total; // records sent by this lane, warm-up included
        final long warm; // the first `warm` records are not counted
        final long[] lat; // latency of counted record i - warm, ns; -1 until its callback ran
        final AtomicLong failed;
        final CountDownLatch done;
        long start;
        long lastDone; // when the last counted callback ran (written by the client's sender thread)

        Lane(KafkaProducer<byte[], byte[]> p, String topic, int size, double rate, double seconds, double warmup,
                AtomicLong failed) {
            this.producer = p;
            this.topic = topic;
            this.value = new byte[size];
            this.intervalNs = (long) (1e9 / rate);
            this.warm = (long) (warmup * rate);
            this.total = warm + (long) (seconds * rate);
            this.lat = new long[(int) (total - warm)];
            Arrays.fill(lat, -1);
            this.failed = failed;
            this.done = new CountDownLatch((int) total);
        }

        @Override
        public void run() {
            for (long i = 0; i < total; i++) {
                long due = start + i * intervalNs;
                long now = System.nanoTime();
                while (now < due) {
                    LockSupport.parkNanos(due - now);
                    now = System.nanoTime();
                }
                final long sent = now;
                final int slot = (int) (i - warm);
                producer.send(new ProducerRecord<>(topic, null, value), (md, e) -> {
                    long end = System.nanoTime();
                    if (e != null) {
                        failed.incrementAndGet();
                    } else if (slot >= 0) {
                        lat[slot] = end - sent;
                    }
                    if (slot >= 0) {
                        lastDone = end;
                    }
                    done.countDown();
                });
            }
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = arg(args, "--bootstrap", null);
        String topic = arg(args, "--topic", null);
        double rate = Double.parseDouble(arg(args, "--rate", "10000"));
        double seconds = Double.parseDouble(arg(args, "--seconds", "20"));
        double warmup = Double.parseDouble(arg(args, "--warmup", "5"));
        String acks = arg(args, "--acks", "1");
        if (acks.equals("-1")) {
            acks = "all";
        }
        int producers = Integer.parseInt(arg(args, "--producers", "1"));
        int size = Integer.parseInt(arg(args, "--size", "100"));
        String raw = arg(args, "--raw", "");

        AtomicLong failed = new AtomicLong();
        Lane[] lanes = new Lane[producers];
        for (int k = 0; k < producers; k++) {
            Properties p = new Properties();
            p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ProducerConfig.CLIENT_ID_CONFIG, "latency-probe-" + k);
            p.put(ProducerConfig.LINGER_MS_CONFIG, "0");
            p.put(ProducerConfig.ACKS_CONFIG, acks);
            p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, acks.equals("all") ? "true" : "false");
            p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
            KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);
            producer.partitionsFor(topic); // metadata before the clock starts
            lanes[k] = new Lane(producer, topic, size, rate / producers, seconds, warmup, failed);
        }
        Thread[] threads = new Thread[producers];
        long start = System.nanoTime() + 50_000_000L;
        for (int k = 0; k < producers; k++) {
            // Lanes are offset by a fraction of the interval so their sends interleave.
            lanes[k].start = start + k * lanes[k].intervalNs / producers;
            threads[k] = new Thread(lanes[k], "lane-" + k);
            threads[k].start();
        }
        for (Thread t : threads) {
            t.join();
        }
        for (Lane l : lanes) {
            l.done.await();
            l.producer.close();
        }

        long counted = 0;
        long first = Long.MAX_VALUE;
        long last = Long.MIN_VALUE;
        for (Lane l : lanes) {
            counted += l.lat.length;
            first = Math.min(first, l.start + l.warm * l.intervalNs); // when the first counted was due
            last = Math.max(last, l.lastDone);
        }
        long[] all = new long[(int) counted];
        int n = 0;
        for (Lane l : lanes) {
            for (long v : l.lat) {
                if (v >= 0) {
                    all[n++] = v;
                }
            }
        }
        all = Arrays.copyOf(all, n);
        Arrays.sort(all);
        double span = (last - first) / 1e9;
        double achieved = span > 0 ? (counted - 1) / span : 0;
        boolean sustained = achieved >= 0.98 * rate && failed.get() == 0 && n > 0;
        System.out.printf(
                "requested=%.0f achieved=%.0f records=%d producers=%d acks=%s p50_us=%d p99_us=%d p999_us=%d max_us=%d failed=%d sustained=%s%n",
                rate, achieved, n, producers, acks, q(all, 0.50), q(all, 0.99), q(all, 0.999),
                n > 0 ? all[n - 1] / 1000 : -1, failed.get(), sustained ? "yes" : "no");
        if (!raw.isEmpty()) {
            try (PrintWriter w = new PrintWriter(new FileWriter(raw))) {
                for (long v : all) {
                    w.println(v);
                }
            } catch (IOException e) {
                System.err.println("writing " + raw + ": " + e);
                System.exit(1);
            }
        }
    }

    static long q(long[] sorted, double p) {
        if (sorted.length == 0) {
            return -1;
        }
        return sorted[Math.min(sorted.length - 1, (int) (p * sorted.length))] / 1000;
    }
}
