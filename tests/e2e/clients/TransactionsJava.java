// kelp end-to-end client: transactions with the Apache Kafka Java client (kafka-clients 4.3).
//
//   java -cp "$KELP_CLIENTS_DIR/java/*" TransactionsJava.java MODE key=value...
//
// One source file, run by the JDK's source launcher. Every mode prints JSON lines and exits 0
// when its checks passed, 1 with what differed, 3 when the broker went away under it (the
// harness then starts it again).
//
// Modes:
//   seed     bootstrap topic count partitions: records key "k{i}", value "v{i}" to partition
//            i % partitions, idempotent, every ack waited for.
//   copy     bootstrap input output group txn commit: a consume-transform-produce loop as Kafka
//            Streams runs it with exactly-once: a read_committed consumer of `input` in group
//            `group`; a transactional producer (`txn`) writes each record to the same
//            partition of `output` with value "{value}@{partition}:{offset}", sends the
//            consumer's offsets with sendOffsetsToTransaction and commits, at most `commit`
//            records per transaction. Exits 0 once it has read every input partition to its
//            end and committed; 3 on any error (the next run resumes from the committed
//            offsets, and its initTransactions fences and aborts what this one left open).
//   verify   bootstrap input output: reads both topics to their ends, `output` read_committed,
//            and checks that partition by partition the output holds every input record
//            exactly once and in order.
//   read     bootstrap topic isolation (read_committed|read_uncommitted) expect: reads every
//            partition from the start until `expect` records arrived (then 2 s more), prints
//            {"values":[...]} in partition then offset order.
//   hang     bootstrap topic txn: a transaction (timeout 2 s) that sends one record, then
//            stays silent for 6 s; its commit must fail (the coordinator aborted it and
//            fenced the producer); then a second producer with the same id commits "after".
//   fence    bootstrap topic txn: producer A opens a transaction and sends "zombie"; producer B
//            with the same id initialises (fencing A) and commits "winner"; A's commit must
//            fail with ProducerFencedException.
//   admin    bootstrap txn: Admin listTransactions and describeTransactions of `txn`; prints
//            what they answer.
//   bench    bootstrap topic count size commit [txn]: produces `count` records of `size` bytes
//            to the topic's partitions in turn, in transactions of `commit` records (0: an
//            idempotent producer, no transactions), waits for every ack; prints the records
//            per second from the first send to the last commit or ack.

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class TransactionsJava {
    static Map<String, String> args = new HashMap<>();

    static String arg(String name) {
        String v = args.get(name);
        if (v == null) {
            System.err.println("missing argument " + name + "=...");
            System.exit(2);
        }
        return v;
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        return b.append('"').toString();
    }

    static void emit(String json) {
        System.out.println(json);
        System.out.flush();
    }

    static void fail(String why) {
        emit("{\"event\":\"failed\",\"why\":" + quote(why) + "}");
        System.exit(1);
    }

    static Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, arg("bootstrap"));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        return p;
    }

    static Properties consumerProps(String isolation) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, arg("bootstrap"));
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        c.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "15000");
        return c;
    }

    static List<TopicPartition> partitions(KafkaConsumer<String, String> c, String topic) {
        List<TopicPartition> out = new ArrayList<>();
        for (PartitionInfo p : c.partitionsFor(topic)) {
            out.add(new TopicPartition(topic, p.partition()));
        }
        out.sort((a, b) -> Integer.compare(a.partition(), b.partition()));
        return out;
    }

    /// Every record of `topic`, per partition in offset order, read to the end offsets.
    static Map<Integer, List<ConsumerRecord<String, String>>> readAll(String topic, String isolation) {
        Map<Integer, List<ConsumerRecord<String, String>>> out = new HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(isolation))) {
            List<TopicPartition> tps = partitions(c, topic);
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> end = c.endOffsets(tps);
            long deadline = System.currentTimeMillis() + 120_000;
            while (tps.stream().anyMatch(tp -> c.position(tp) < end.get(tp))) {
                if (System.currentTimeMillis() > deadline) {
                    fail("reading " + topic + " did not reach the end offsets " + end);
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                    out.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r);
                }
            }
        }
        return out;
    }

    public static void main(String[] argv) throws Exception {
        for (int i = 1; i < argv.length; i++) {
            int eq = argv[i].indexOf('=');
            args.put(argv[i].substring(0, eq), argv[i].substring(eq + 1));
        }
        switch (argv[0]) {
            case "seed" -> seed();
            case "copy" -> copy();
            case "verify" -> verify();
            case "read" -> read();
            case "hang" -> hang();
            case "fence" -> fence();
            case "admin" -> admin();
            case "bench" -> bench();
            default -> fail("unknown mode " + argv[0]);
        }
    }

    static void seed() throws Exception {
        int count = Integer.parseInt(arg("count"));
        int parts = Integer.parseInt(arg("partitions"));
        try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps())) {
            for (int i = 0; i < count; i++) {
                p.send(new ProducerRecord<>(arg("topic"), i % parts, "k" + i, "v" + i));
            }
            p.flush();
        }
        emit("{\"event\":\"seeded\",\"count\":" + count + "}");
    }

    static void copy() {
        Properties pp = producerProps();
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, arg("txn"));
        pp.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "10000");
        Properties cp = consumerProps("read_committed");
        cp.put(ConsumerConfig.GROUP_ID_CONFIG, arg("group"));
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, arg("commit"));
        String input = arg("input");
        String output = arg("output");
        long copied = 0;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp);
                KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
            p.initTransactions();
            c.subscribe(List.of(input));
            emit("{\"event\":\"started\"}");
            int idle = 0;
            while (true) {
                ConsumerRecords<String, String> records = c.poll(Duration.ofMillis(500));
                if (records.isEmpty()) {
                    Collection<TopicPartition> mine = c.assignment();
                    if (!mine.isEmpty() && mine.size() == partitions(c, input).size()) {
                        Map<TopicPartition, Long> end = c.endOffsets(mine);
                        Map<TopicPartition, OffsetAndMetadata> committed = c.committed(new java.util.HashSet<>(mine));
                        boolean done = mine.stream().allMatch(tp -> committed.get(tp) != null
                                && committed.get(tp).offset() >= end.get(tp));
                        if (done && ++idle >= 2) {
                            emit("{\"event\":\"done\",\"copied\":" + copied + "}");
                            return;
                        }
                    }
                    continue;
                }
                idle = 0;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                for (ConsumerRecord<String, String> r : records) {
                    String value = r.value() + "@" + r.partition() + ":" + r.offset();
                    p.send(new ProducerRecord<>(output, r.partition(), r.key(), value));
                    next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                p.sendOffsetsToTransaction(next, c.groupMetadata());
                p.commitTransaction();
                copied += records.count();
                emit("{\"event\":\"committed\",\"records\":" + records.count() + ",\"copied\":" + copied + "}");
            }
        } catch (KafkaException e) {
            emit("{\"event\":\"error\",\"copied\":" + copied + ",\"error\":" + quote(e.toString()) + "}");
            System.exit(3);
        }
    }

    static void verify() {
        Map<Integer, List<ConsumerRecord<String, String>>> in = readAll(arg("input"), "read_uncommitted");
        Map<Integer, List<ConsumerRecord<String, String>>> out = readAll(arg("output"), "read_committed");
        long total = 0;
        for (Map.Entry<Integer, List<ConsumerRecord<String, String>>> e : in.entrySet()) {
            List<ConsumerRecord<String, String>> want = e.getValue();
            List<ConsumerRecord<String, String>> got = out.getOrDefault(e.getKey(), List.of());
            for (int i = 0; i < Math.max(want.size(), got.size()); i++) {
                String w = i < want.size()
                        ? want.get(i).value() + "@" + e.getKey() + ":" + want.get(i).offset() : "(nothing)";
                String g = i < got.size() ? got.get(i).value() : "(nothing)";
                if (!w.equals(g)) {
                    fail("partition " + e.getKey() + " output record " + i + ": want " + w + ", got " + g
                            + " (input " + want.size() + " records, output " + got.size() + ")");
                }
            }
            total += want.size();
        }
        long outTotal = out.values().stream().mapToLong(List::size).sum();
        if (outTotal != total) {
            fail("output holds " + outTotal + " records for " + total + " input records");
        }
        emit("{\"event\":\"verified\",\"records\":" + total + "}");
    }

    static void read() {
        int expect = Integer.parseInt(arg("expect"));
        List<String> values = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(arg("isolation")))) {
            List<TopicPartition> tps = partitions(c, arg("topic"));
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<Integer, List<String>> byPartition = new HashMap<>();
            long deadline = System.currentTimeMillis() + 60_000;
            long quietUntil = Long.MAX_VALUE;
            int seen = 0;
            while (System.currentTimeMillis() < Math.min(deadline, quietUntil)) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    byPartition.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.value());
                    seen++;
                }
                if (seen >= expect && quietUntil == Long.MAX_VALUE) {
                    quietUntil = System.currentTimeMillis() + 2_000;
                }
            }
            for (TopicPartition tp : tps) {
                values.addAll(byPartition.getOrDefault(tp.partition(), List.of()));
            }
        }
        StringBuilder b = new StringBuilder("{\"event\":\"read\",\"values\":[");
        for (int i = 0; i < values.size(); i++) {
            b.append(i == 0 ? "" : ",").append(quote(values.get(i)));
        }
        emit(b.append("]}").toString());
    }

    static KafkaProducer<String, String> transactional(String id, int timeoutMs) {
        Properties pp = producerProps();
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, id);
        pp.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, Integer.toString(timeoutMs));
        KafkaProducer<String, String> p = new KafkaProducer<>(pp);
        p.initTransactions();
        return p;
    }

    static void hang() throws Exception {
        String topic = arg("topic");
        try (KafkaProducer<String, String> p = transactional(arg("txn"), 2000)) {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, "k", "hung")).get();
            emit("{\"event\":\"sent\"}");
            Thread.sleep(6000);
            try {
                p.commitTransaction();
                fail("the commit of a transaction past its timeout succeeded");
            } catch (KafkaException e) {
                emit("{\"event\":\"commit_refused\",\"error\":" + quote(e.getClass().getSimpleName()) + "}");
            }
        }
        try (KafkaProducer<String, String> p = transactional(arg("txn"), 60000)) {
            p.beginTransaction();
            p.send(new ProducerRecord<>(topic, 0, "k", "after"));
            p.commitTransaction();
            emit("{\"event\":\"committed_after\"}");
        }
    }

    static void fence() throws Exception {
        String topic = arg("topic");
        KafkaProducer<String, String> a = transactional(arg("txn"), 60000);
        a.beginTransaction();
        a.send(new ProducerRecord<>(topic, 0, "k", "zombie")).get();
        try (KafkaProducer<String, String> b = transactional(arg("txn"), 60000)) {
            b.beginTransaction();
            b.send(new ProducerRecord<>(topic, 0, "k", "winner"));
            b.commitTransaction();
            emit("{\"event\":\"winner_committed\"}");
        }
        try {
            a.commitTransaction();
            fail("the fenced producer committed");
        } catch (KafkaException e) {
            emit("{\"event\":\"zombie_refused\",\"error\":" + quote(e.getClass().getSimpleName()) + "}");
        } finally {
            a.close(Duration.ZERO);
        }
    }

    static void admin() throws ExecutionException, InterruptedException {
        Properties props = new Properties();
        props.put("bootstrap.servers", arg("bootstrap"));
        try (Admin admin = Admin.create(props)) {
            for (TransactionListing l : admin.listTransactions().all().get()) {
                emit("{\"event\":\"listed\",\"id\":" + quote(l.transactionalId()) + ",\"producer_id\":"
                        + l.producerId() + ",\"state\":" + quote(l.state().toString()) + "}");
            }
            TransactionDescription d = admin.describeTransactions(List.of(arg("txn"))).description(arg("txn")).get();
            emit("{\"event\":\"described\",\"state\":" + quote(d.state().toString()) + ",\"producer_id\":"
                    + d.producerId() + ",\"epoch\":" + d.producerEpoch() + ",\"timeout_ms\":"
                    + d.transactionTimeoutMs() + ",\"partitions\":" + d.topicPartitions().size() + "}");
        }
    }

    static void bench() throws Exception {
        int count = Integer.parseInt(arg("count"));
        int commit = Integer.parseInt(arg("commit"));
        String topic = arg("topic");
        String value = "x".repeat(Integer.parseInt(arg("size")));
        Properties pp = producerProps();
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        pp.put(ProducerConfig.BATCH_SIZE_CONFIG, "65536");
        if (commit > 0) {
            pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, arg("txn"));
        }
        try (KafkaProducer<String, String> p = new KafkaProducer<>(pp)) {
            int parts = p.partitionsFor(topic).size();
            if (commit > 0) {
                p.initTransactions();
            }
            long start = System.nanoTime();
            for (int i = 0; i < count; i++) {
                if (commit > 0 && i % commit == 0) {
                    p.beginTransaction();
                }
                p.send(new ProducerRecord<>(topic, i % parts, null, value));
                if (commit > 0 && (i % commit == commit - 1 || i == count - 1)) {
                    p.commitTransaction();
                }
            }
            p.flush();
            double secs = (System.nanoTime() - start) / 1e9;
            emit("{\"event\":\"bench\",\"records\":" + count + ",\"commit\":" + commit + ",\"seconds\":"
                    + String.format("%.3f", secs) + ",\"records_per_s\":" + Math.round(count / secs) + "}");
        }
    }
}
