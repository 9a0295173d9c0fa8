// kelp end-to-end client: the Apache Kafka Java client (kafka-clients 4.3) against a running broker.
//
//   java -cp "$KELP_CLIENTS_DIR/java/*" JavaClient.java --bootstrap 127.0.0.1:9092 --topic t \
//       --mode produce-verify|admin|produce|group|keyless [--compression snappy] [--count 1000] \
//       [--create] [--timeout 60] [--security-protocol SASL_SSL --sasl-mechanism SCRAM-SHA-512 \
//       --sasl-username U --sasl-password P --ssl-ca ca.pem] [--ssl-keystore key-and-chain.pem]
//       [--expect-authorization-error]
//
// One source file, run by the JDK's source launcher: no build tool. The jars come from
// scripts/install-clients.sh. The producer keeps the client's defaults, so it is idempotent
// (enable.idempotence=true, acks=all): kelp must answer InitProducerId and track sequences.
//
// Modes:
//   produce-verify  produce N keyed records with 1-3 headers (a repeated key, a null value) and
//                   explicit timestamps to partitions i % 3, wait for every ack, read everything
//                   back with assign + seekToBeginning (no group.id) and compare record by
//                   record with what was acked. With --expect-authorization-error: only
//                   the produce, and every send must fail with TopicAuthorizationException
//                   naming --topic (the principal may not write it); exit 0 only then.
//   admin           Admin: create (retention.ms), describe, describe configs, incremental alter,
//                   create partitions, delete records, delete topic; one line per step passed.
//   produce         N records key "k{i}", value "v{i}" to partition i % P (--first, --partitions).
//   group           one member of --group: subscribe with a rebalance listener, no auto commit,
//                   commitSync() after each poll batch, until --stop-file exists or --idle-exit
//                   seconds pass without records. Classic protocol with the client's default
//                   assignors (range first: eager), or KIP-848 with --group-protocol consumer
//                   (server-side assignor, incremental assign/revoke). Prints one JSON object
//                   per line (events ready, start, assigned, revoked, lost, batch,
//                   commit_failed, then summary), as e2e_common.py describes.
//   scram-users     Admin on SCRAM credentials of --scram-user (with --scram-password):
//                   upsert SHA-512 and SHA-256, describe, delete SHA-256, describe, refusals.
//   acls            Admin on ACL bindings (KIP-140, prefixed KIP-290), as a principal with ALTER
//                   and DESCRIBE on the cluster: create five (--topic T has a '-'; P is T up to
//                   its last '-'; group --group, default T-readers), describe them with filters
//                   (any, by principal, by permission, LITERAL and MATCH on topic names), delete
//                   User:alice's topic bindings, refuse invalid ones (InvalidRequestException),
//                   and check exactly which bindings come back each time.
//   keyless         on a compacted topic (cleanup.policy=compact) the harness made: N keyed
//                   records to partition 0 and a flush, one record without a key, which must
//                   fail with InvalidRecordException, a flush, N more keyed records; then reads
//                   partition 0 back and checks it holds exactly the 2N keyed records.
//
// Exit 0 with a one-line JSON summary when every check passed; exit 1 with what differed.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public class JavaClient {
    static final int PARTITIONS = 3;
    static final String USAGE = String.join("\n",
            "usage: java -cp 'JARS/*' JavaClient.java --bootstrap HOST:PORT --topic NAME",
            "       --mode produce-verify|admin|produce|group|keyless|describe-group|scram-users|acls [--compression none|gzip|snappy|lz4|zstd]",
            "       [--count N] [--create] [--timeout SECONDS]",
            "",
            "       [--group NAME --stop-file PATH --start-file PATH --idle-exit S --max-batch N",
            "        --batch-delay-ms MS --group-protocol classic|consumer] [--first I --partitions P]",
            "       [--security-protocol PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL] [--sasl-mechanism M",
            "        --sasl-username U --sasl-password P] [--ssl-ca PEM] [--ssl-keystore PEM]",
            "       [--scram-user U --scram-password P] (mode scram-users)",
            "       [--expect-authorization-error] (mode produce-verify: the produce must be refused)",
            "  --create      create the topic (3 partitions; produce: --partitions) with the Admin API first",
            "  --count N     records to produce (default 1000)",
            "  --timeout S   give up (exit 1) after this long in all (default 60)");

    // ---- command line, output, watchdog -----------------------------------------------------

    static String bootstrap, topic, mode, compression = "none";
    static int count = 1000;
    static boolean create = false, expectAuthorizationError = false;
    static String group, stopFile, startFile, groupProtocol = "classic";
    static double idleExit = 0;
    static int maxBatch = 500, batchDelayMs = 0, first = 0, partitions = 6;
    static double timeoutSeconds = 60;
    static long deadline;
    static volatile String step = "starting";

    public static void main(String[] argv) {
        // kafka-clients logs through SLF4J; no provider is on the class path, so keep SLF4J's
        // own "no providers" notice quiet too. Failures are reported from the exceptions.
        System.setProperty("slf4j.internal.verbosity", "ERROR");
        parseArgs(argv);
        deadline = System.nanoTime() + (long) (timeoutSeconds * 1e9);
        Thread dog = new Thread(() -> {
            try {
                Thread.sleep((long) (timeoutSeconds * 1000));
            } catch (InterruptedException e) {
                return;
            }
            fail("timed out after " + fmt(timeoutSeconds) + "s during: " + step);
        }, "watchdog");
        dog.setDaemon(true);
        dog.start();
        try {
            if (mode.equals("admin")) {
                admin();
            } else if (mode.equals("produce")) {
                produceMode();
            } else if (mode.equals("group")) {
                groupMode();
            } else if (mode.equals("keyless")) {
                keylessMode();
            } else if (mode.equals("describe-group")) {
                describeGroup();
            } else if (mode.equals("scram-users")) {
                scramUsers();
            } else if (mode.equals("acls")) {
                acls();
            } else if (expectAuthorizationError) {
                produceRefused();
            } else {
                produceVerify();
            }
        } catch (ExecutionException e) {
            Throwable c = e.getCause() == null ? e : e.getCause();
            fail(step + ": " + c.getClass().getSimpleName() + ": " + c.getMessage());
        } catch (Exception e) {
            fail(step + ": " + e.getClass().getSimpleName() + ": " + e.getMessage());
        }
    }

    static void parseArgs(String[] argv) {
        for (int i = 0; i < argv.length; i++) {
            String flag = argv[i];
            if (flag.equals("-h") || flag.equals("--help")) {
                System.out.println(USAGE);
                System.exit(0);
            }
            if (flag.equals("--create")) {
                create = true;
                continue;
            }
            if (flag.equals("--expect-authorization-error")) {
                expectAuthorizationError = true;
                continue;
            }
            if (i + 1 >= argv.length) usageError(flag + " needs a value");
            String v = argv[++i];
            switch (flag) {
                case "--bootstrap" -> bootstrap = v;
                case "--topic" -> topic = v;
                case "--mode" -> mode = v;
                case "--compression" -> compression = v;
                case "--count" -> count = parseNumber(flag, v).intValue();
                case "--timeout" -> timeoutSeconds = parseNumber(flag, v).doubleValue();
                case "--group" -> group = v;
                case "--stop-file" -> stopFile = v;
                case "--start-file" -> startFile = v;
                case "--group-protocol" -> groupProtocol = v;
                case "--idle-exit" -> idleExit = parseNumber(flag, v).doubleValue();
                case "--max-batch" -> maxBatch = parseNumber(flag, v).intValue();
                case "--batch-delay-ms" -> batchDelayMs = parseNumber(flag, v).intValue();
                case "--first" -> first = parseNumber(flag, v).intValue();
                case "--partitions" -> partitions = parseNumber(flag, v).intValue();
                case "--security-protocol" -> securityProtocol = v;
                case "--sasl-mechanism" -> saslMechanism = v;
                case "--sasl-username" -> saslUsername = v;
                case "--sasl-password" -> saslPassword = v;
                case "--ssl-ca" -> sslCa = v;
                case "--ssl-cert" -> sslCert = v;
                case "--ssl-key" -> sslKey = v;
                case "--ssl-keystore" -> sslKeystore = v;
                case "--scram-user" -> scramUser = v;
                case "--scram-password" -> scramPassword = v;
                default -> usageError("unknown argument " + flag);
            }
        }
        if (bootstrap == null || topic == null || mode == null) usageError("--bootstrap, --topic and --mode are required");
        if (!List.of("produce-verify", "admin", "produce", "group", "keyless", "describe-group", "scram-users", "acls").contains(mode)) usageError("--mode must be produce-verify, admin, produce, group, keyless, describe-group, scram-users or acls");
        if (expectAuthorizationError && !mode.equals("produce-verify")) usageError("--expect-authorization-error goes with --mode produce-verify");
        if (mode.equals("scram-users") && (scramUser == null || scramPassword == null)) usageError("--mode scram-users needs --scram-user and --scram-password");
        checkSecurityArgs();
        if ((mode.equals("group") || mode.equals("describe-group")) && group == null) usageError("--mode " + mode + " needs --group NAME");
        if (!List.of("classic", "consumer").contains(groupProtocol)) usageError("--group-protocol must be classic or consumer");
        if (!List.of("none", "gzip", "snappy", "lz4", "zstd").contains(compression)) usageError("unknown --compression " + compression);
        if (count < 1) usageError("--count must be at least 1");
        if (!(timeoutSeconds > 0)) usageError("--timeout must be positive");
    }

    // ---- security: the flags every client program takes (e2e_common.py describes them) ------
    //
    // PLAINTEXT, the default, adds nothing to any configuration. SASL: sasl.mechanism and a
    // sasl.jaas.config for ScramLoginModule or PlainLoginModule. TLS: the CA as a PEM trust store
    // (ssl.truststore.type=PEM) and --ssl-keystore, one PEM file with the PKCS#8 key and the
    // certificate chain, as a PEM key store (no key password); --ssl-cert and --ssl-key are
    // accepted for symmetry with the other clients and not used to connect (the summary names
    // --ssl-cert's subject as Java prints it, "client_subject"). Hostname verification stays on
    // (https): the test certificates name 127.0.0.1 and localhost.

    static String securityProtocol = "PLAINTEXT", saslMechanism, saslUsername, saslPassword;
    static String sslCa, sslCert, sslKey, sslKeystore;
    static String scramUser, scramPassword;

    static void checkSecurityArgs() {
        if (!List.of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL").contains(securityProtocol)) usageError("unknown --security-protocol " + securityProtocol);
        boolean sasl = securityProtocol.startsWith("SASL_"), tls = securityProtocol.endsWith("SSL");
        boolean anySasl = saslMechanism != null || saslUsername != null || saslPassword != null;
        if (sasl && (saslMechanism == null || saslUsername == null || saslPassword == null)) usageError("--security-protocol " + securityProtocol + " needs --sasl-mechanism, --sasl-username and --sasl-password");
        if (!sasl && anySasl) usageError("--sasl-* flags need a SASL --security-protocol");
        if (sasl && !List.of("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN").contains(saslMechanism)) usageError("unknown --sasl-mechanism " + saslMechanism);
        if (!tls && (sslCa != null || sslCert != null || sslKey != null || sslKeystore != null)) usageError("--ssl-* flags need an SSL --security-protocol");
        if ((sslCert == null) != (sslKey == null)) usageError("--ssl-cert and --ssl-key go together");
    }

    /** New client properties holding the security configuration (none for PLAINTEXT). */
    static Properties secured() {
        Properties p = new Properties();
        if (securityProtocol.equals("PLAINTEXT")) return p;
        p.put("security.protocol", securityProtocol);
        if (securityProtocol.startsWith("SASL_")) {
            String module = saslMechanism.equals("PLAIN")
                    ? "org.apache.kafka.common.security.plain.PlainLoginModule"
                    : "org.apache.kafka.common.security.scram.ScramLoginModule";
            p.put("sasl.mechanism", saslMechanism);
            p.put("sasl.jaas.config", module + " required username=" + jaasQuote(saslUsername) + " password=" + jaasQuote(saslPassword) + ";");
        }
        if (securityProtocol.endsWith("SSL")) {
            if (sslCa != null) {
                p.put("ssl.truststore.type", "PEM");
                p.put("ssl.truststore.location", sslCa);
            }
            if (sslKeystore != null) {
                p.put("ssl.keystore.type", "PEM");
                p.put("ssl.keystore.location", sslKeystore);
            }
        }
        return p;
    }

    static String jaasQuote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static Number parseNumber(String flag, String v) {
        try {
            return Double.valueOf(v);
        } catch (NumberFormatException e) {
            usageError(flag + " wants a number, got " + v);
            return 0;
        }
    }

    static void usageError(String msg) {
        System.err.println(USAGE + "\nerror: " + msg);
        System.exit(2);
    }

    static void fail(String... lines) {
        fail(Arrays.asList(lines));
    }

    static synchronized void fail(List<String> lines) {
        for (int i = 0; i < lines.size(); i++) {
            System.err.println((i == lines.size() - 1 ? "FAIL: " : "") + lines.get(i));
        }
        System.err.flush();
        System.out.flush();
        Runtime.getRuntime().halt(1); // no shutdown hooks: client threads may be stuck
    }

    static void stepOk(String text) {
        System.out.println("ok: " + text);
        System.out.flush();
    }

    static void ok(Map<String, Object> summary) {
        StringBuilder sb = new StringBuilder("{");
        summary.forEach((k, v) -> {
            if (sb.length() > 1) sb.append(", ");
            sb.append(json(k)).append(": ").append(v instanceof String s ? json(s) : String.valueOf(v));
        });
        System.out.println(sb.append("}"));
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }

    static Map<String, Object> summary() {
        Map<String, Object> m = new java.util.LinkedHashMap<>();
        m.put("client", "kafka-clients (Java)");
        m.put("version", AppInfoParser.getVersion());
        m.put("mode", mode);
        m.put("topic", topic);
        m.put("compression", compression);
        if (!securityProtocol.equals("PLAINTEXT")) {
            m.put("security_protocol", securityProtocol);
            if (saslMechanism != null) {
                m.put("sasl_mechanism", saslMechanism);
                m.put("sasl_username", saslUsername);
            }
            if (securityProtocol.endsWith("SSL")) m.put("client_certificate", sslKeystore != null);
            if (sslCert != null) m.put("client_subject", certificateSubject(sslCert));
        }
        return m;
    }

    static long msLeft() {
        return Math.max(100, (deadline - System.nanoTime()) / 1_000_000);
    }

    static boolean expired() {
        return System.nanoTime() >= deadline;
    }

    static <T> T get(Future<T> f) throws Exception {
        return f.get(msLeft(), TimeUnit.MILLISECONDS);
    }

    // ---- the records ------------------------------------------------------------------------

    record Hdr(String key, byte[] value) {
        public String toString() {
            return key + "=" + show(value);
        }
    }

    static final class Expected {
        final int i, partition;
        final byte[] key, value;
        final List<Hdr> headers;
        final long timestamp;
        Integer ackedPartition;
        Long ackedOffset;

        Expected(int i, int partition, byte[] key, byte[] value, List<Hdr> headers, long timestamp) {
            this.i = i;
            this.partition = partition;
            this.key = key;
            this.value = value;
            this.headers = headers;
            this.timestamp = timestamp;
        }
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static byte[] recordValue(int i) {
        if (i % 50 == 7) return new byte[0];
        if (i % 50 == 23) return null;
        return bytes("value-" + i + ":" + "kelp-e2e-".repeat(i % 17));
    }

    /** 1 to 3 headers: a plain one, a null or an empty value, a key repeated around another. */
    static List<Hdr> recordHeaders(int i) {
        Hdr idx = new Hdr("idx", bytes(Integer.toString(i)));
        return switch ((i / PARTITIONS) % 3) {
            case 0 -> List.of(idx);
            case 1 -> (i / 9) % 2 == 0 ? Arrays.asList(idx, new Hdr("nil", null)) : List.of(idx, new Hdr("empty", new byte[0]));
            default -> List.of(new Hdr("dup", bytes("first")), idx, new Hdr("dup", bytes("second")));
        };
    }

    static List<Expected> makeRecords(int n) {
        long base = System.currentTimeMillis() / 1000 * 1000 - 600_000;
        List<Expected> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            out.add(new Expected(i, i % PARTITIONS, bytes("key-" + i), recordValue(i), recordHeaders(i), base + i));
        }
        return out;
    }

    static int[] counts(List<Expected> records) {
        int[] c = new int[PARTITIONS];
        for (Expected r : records) c[r.partition]++;
        return c;
    }

    // ---- clients ----------------------------------------------------------------------------

    static Admin adminClient() {
        Properties p = secured();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "kelp-e2e-java-admin");
        int left = (int) Math.min(Integer.MAX_VALUE, msLeft());
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, left);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, Math.min(30_000, left));
        return Admin.create(p);
    }

    static KafkaProducer<byte[], byte[]> producer() {
        Properties p = secured();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "kelp-e2e-java-producer");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 5);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, msLeft());
        // enable.idempotence and acks stay at their defaults (true, all) on purpose.
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    /** Sends every record, waits for every ack, fills in the acked (partition, offset). */
    static void produce(List<Expected> records) throws Exception {
        step = "producing " + records.size() + " records (" + compression + ")";
        try (KafkaProducer<byte[], byte[]> producer = producer()) {
            List<Future<RecordMetadata>> acks = new ArrayList<>(records.size());
            for (Expected r : records) {
                List<Header> hs = new ArrayList<>();
                for (Hdr h : r.headers) hs.add(new RecordHeader(h.key(), h.value()));
                acks.add(producer.send(new ProducerRecord<>(topic, r.partition, r.timestamp, r.key, r.value, hs)));
            }
            step = "waiting for acks of " + records.size() + " records";
            producer.flush();
            List<String> failures = new ArrayList<>();
            for (int k = 0; k < records.size(); k++) {
                Expected r = records.get(k);
                try {
                    RecordMetadata md = get(acks.get(k));
                    r.ackedPartition = md.partition();
                    r.ackedOffset = md.offset();
                } catch (ExecutionException e) {
                    failures.add("record " + r.i + ": send failed: " + e.getCause());
                }
            }
            if (!failures.isEmpty()) {
                List<String> out = new ArrayList<>(failures.subList(0, Math.min(20, failures.size())));
                out.add(failures.size() + " of " + records.size() + " sends failed");
                fail(out);
            }
        }
    }

    // ---- produce-verify ---------------------------------------------------------------------

    static void produceVerify() throws Exception {
        if (create) {
            step = "create topic " + topic;
            try (Admin admin = adminClient()) {
                get(admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all());
            }
        }
        List<Expected> records = makeRecords(count);
        produce(records);
        int[] counts = counts(records);

        step = "reading back";
        Properties p = secured();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "kelp-e2e-java-consumer");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        List<TopicPartition> tps = new ArrayList<>();
        for (int q = 0; q < PARTITIONS; q++) tps.add(new TopicPartition(topic, q));
        Map<TopicPartition, Long> begin, end;
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long[] positions = new long[PARTITIONS];
            while (!reached(positions, counts)) {
                if (expired()) fail("read back stopped at offsets " + Arrays.toString(positions) + ", expected " + Arrays.toString(counts));
                for (ConsumerRecord<byte[], byte[]> rec : consumer.poll(Duration.ofMillis(Math.min(500, msLeft())))) {
                    got.add(rec);
                    positions[rec.partition()] = rec.offset() + 1;
                }
            }
            step = "checking watermarks";
            begin = consumer.beginningOffsets(tps, Duration.ofMillis(msLeft()));
            end = consumer.endOffsets(tps, Duration.ofMillis(msLeft()));
        }

        step = "comparing";
        List<String> errors = verify(records, got, counts);
        for (TopicPartition tp : tps) {
            long lo = begin.get(tp), hi = end.get(tp);
            if (lo != 0 || hi != counts[tp.partition()]) {
                errors.add("partition " + tp.partition() + ": beginning/end offsets = " + lo + "/" + hi + ", expected 0/" + counts[tp.partition()]);
            }
        }
        if (!errors.isEmpty()) {
            int n = errors.size();
            if (n > 25) {
                errors = new ArrayList<>(errors.subList(0, 25));
                errors.add("... and " + (n - 25) + " more differences");
            }
            errors.add(n + " differences in " + records.size() + " records");
            fail(errors);
        }
        Map<String, Object> s = summary();
        s.put("records", records.size());
        s.put("per_partition", Arrays.stream(counts).boxed().toList());
        s.put("idempotence", true);
        ok(s);
    }

    static boolean reached(long[] positions, int[] counts) {
        for (int q = 0; q < PARTITIONS; q++) if (positions[q] < counts[q]) return false;
        return true;
    }

    static List<String> verify(List<Expected> records, List<ConsumerRecord<byte[], byte[]>> got, int[] counts) {
        List<String> errors = new ArrayList<>();
        Map<String, Expected> byOffset = new HashMap<>();
        for (int q = 0; q < PARTITIONS; q++) {
            long k = 0;
            for (Expected r : records) {
                if (r.partition != q) continue;
                if (r.ackedPartition == null || r.ackedPartition != q || r.ackedOffset == null || r.ackedOffset != k) {
                    errors.add("record " + r.i + ": send #" + k + " to partition " + q + " acked at partition "
                            + r.ackedPartition + " offset " + r.ackedOffset);
                }
                byOffset.put(r.ackedPartition + "/" + r.ackedOffset, r);
                k++;
            }
            List<Long> offsets = new ArrayList<>();
            for (ConsumerRecord<byte[], byte[]> g : got) if (g.partition() == q) offsets.add(g.offset());
            boolean contiguous = offsets.size() == counts[q];
            for (int j = 0; contiguous && j < offsets.size(); j++) contiguous = offsets.get(j) == j;
            if (!contiguous) {
                errors.add("partition " + q + ": read " + offsets.size() + " records, offsets "
                        + offsets.subList(0, Math.min(4, offsets.size())) + "..., expected 0.." + (counts[q] - 1));
            }
        }
        for (ConsumerRecord<byte[], byte[]> g : got) {
            Expected r = byOffset.get(g.partition() + "/" + g.offset());
            String where = "partition " + g.partition() + " offset " + g.offset();
            if (r == null) {
                errors.add(where + ": read a record no send was acked with");
                continue;
            }
            where = "record " + r.i + " (" + where + ")";
            if (!Arrays.equals(r.key, g.key())) errors.add(where + ": key differs: expected " + show(r.key) + ", got " + show(g.key()));
            if (!Arrays.equals(r.value, g.value())) errors.add(where + ": value differs: expected " + show(r.value) + ", got " + show(g.value()));
            List<Hdr> hs = new ArrayList<>();
            for (Header h : g.headers()) hs.add(new Hdr(h.key(), h.value()));
            if (!sameHeaders(r.headers, hs)) errors.add(where + ": headers differ: expected " + r.headers + ", got " + hs);
            if (g.timestamp() != r.timestamp) errors.add(where + ": timestamp differs: expected " + r.timestamp + ", got " + g.timestamp());
            if (g.timestampType() != TimestampType.CREATE_TIME) errors.add(where + ": timestamp type " + g.timestampType() + ", expected CreateTime");
        }
        return errors;
    }

    static boolean sameHeaders(List<Hdr> a, List<Hdr> b) {
        if (a.size() != b.size()) return false;
        for (int j = 0; j < a.size(); j++) {
            if (!a.get(j).key().equals(b.get(j).key()) || !Arrays.equals(a.get(j).value(), b.get(j).value())) return false;
        }
        return true;
    }

    static String show(byte[] b) {
        return b == null ? "null" : json(new String(b, StandardCharsets.UTF_8));
    }

    static String json(String s) {
        StringBuilder sb = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') sb.append('\\').append(c);
            else if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
            else sb.append(c);
        }
        return sb.append('"').toString();
    }

    static String fmt(double d) {
        return d == Math.rint(d) ? Long.toString((long) d) : Double.toString(d);
    }

    // ---- admin ------------------------------------------------------------------------------

    /** Polls until probe gives want (metadata may trail a change), bounded by the run. */
    static <T> void eventually(String what, Supplier<T> probe, T want) throws Exception {
        T have = null;
        while (!expired()) {
            have = probe.get();
            if (want.equals(have)) return;
            Thread.sleep(Math.min(200, msLeft()));
        }
        fail(what + ": expected " + want + ", last seen " + have);
    }

    static Object partitionCount(Admin admin) {
        try {
            return get(admin.describeTopics(List.of(topic)).allTopicNames()).get(topic).partitions().size();
        } catch (ExecutionException e) {
            return e.getCause() instanceof UnknownTopicOrPartitionException ? "UNKNOWN_TOPIC_OR_PARTITION" : "error: " + e.getCause();
        } catch (Exception e) {
            return "error: " + e;
        }
    }

    static void checkConfig(Admin admin, String name, String value, String what) throws Exception {
        ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Config config = get(admin.describeConfigs(List.of(res)).all()).get(res);
        ConfigEntry e = config == null ? null : config.get(name);
        if (e == null) fail(what + ": " + name + " missing from the described configs");
        if (!value.equals(e.value())) fail(what + ": " + name + " = " + e.value() + ", expected " + value);
        if (e.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG) {
            fail(what + ": " + name + " has source " + e.source() + ", expected DYNAMIC_TOPIC_CONFIG");
        }
    }

    static void admin() throws Exception {
        try (Admin admin = adminClient()) {
            step = "create topic " + topic;
            NewTopic nt = new NewTopic(topic, PARTITIONS, (short) 1).configs(Map.of("retention.ms", "3600000"));
            get(admin.createTopics(List.of(nt)).all());
            stepOk("create topic " + topic + " (3 partitions, retention.ms=3600000)");

            step = "describe topic";
            eventually(step, () -> partitionCount(admin), (Object) 3);
            stepOk("describe topic: 3 partitions");

            step = "describe configs";
            checkConfig(admin, "retention.ms", "3600000", step);
            stepOk("describe configs: retention.ms=3600000 (DYNAMIC_TOPIC_CONFIG)");

            step = "incremental alter configs";
            ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            AlterConfigOp set = new AlterConfigOp(new ConfigEntry("max.message.bytes", "200000"), AlterConfigOp.OpType.SET);
            get(admin.incrementalAlterConfigs(Map.of(res, List.of(set))).all());
            checkConfig(admin, "max.message.bytes", "200000", step);
            // An incremental alter leaves the other topic configs alone.
            checkConfig(admin, "retention.ms", "3600000", step + " (retention.ms kept)");
            stepOk("incremental alter configs: max.message.bytes=200000, retention.ms kept");

            step = "create partitions";
            get(admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all());
            eventually(step + " (describe)", () -> partitionCount(admin), (Object) 5);
            stepOk("create partitions: 5 partitions");

            step = "produce 10 records to partition 0";
            List<Expected> records = new ArrayList<>();
            long now = System.currentTimeMillis();
            for (int i = 0; i < 10; i++) {
                records.add(new Expected(i, 0, bytes("key-" + i), bytes("value-" + i), List.of(new Hdr("idx", bytes("" + i))), now));
            }
            produce(records);
            for (int i = 0; i < 10; i++) {
                if (records.get(i).ackedOffset != i) fail(step + ": record " + i + " acked at offset " + records.get(i).ackedOffset);
            }
            stepOk("produce 10 records to partition 0: offsets 0..9 (" + compression + ", idempotent)");

            step = "delete records before offset 5";
            TopicPartition tp0 = new TopicPartition(topic, 0);
            long low = get(admin.deleteRecords(Map.of(tp0, RecordsToDelete.beforeOffset(5))).lowWatermarks().get(tp0)).lowWatermark();
            if (low != 5) fail(step + ": low watermark " + low + ", expected 5");
            long earliest = get(admin.listOffsets(Map.of(tp0, OffsetSpec.earliest())).partitionResult(tp0)).offset();
            long latest = get(admin.listOffsets(Map.of(tp0, OffsetSpec.latest())).partitionResult(tp0)).offset();
            if (earliest != 5 || latest != 10) fail(step + ": list offsets earliest/latest = " + earliest + "/" + latest + ", expected 5/10");
            stepOk("delete records: low watermark 5, earliest 5, latest 10");

            step = "delete topic";
            get(admin.deleteTopics(List.of(topic)).all());
            eventually(step + " (list topics)", () -> {
                try {
                    return get(admin.listTopics().names()).contains(topic);
                } catch (Exception e) {
                    return "error: " + e;
                }
            }, (Object) false);
            Object described = partitionCount(admin);
            if (!"UNKNOWN_TOPIC_OR_PARTITION".equals(described)) {
                fail(step + ": describe after delete gave " + described + ", expected UnknownTopicOrPartitionException");
            }
            stepOk("delete topic: gone from list and describe");
        }
        Map<String, Object> s = summary();
        s.put("steps", 7);
        ok(s);
    }

    // ---- keyless -----------------------------------------------------------------------------

    /** Sends `records` to partition 0 and flushes; returns each send's outcome. */
    static List<Future<RecordMetadata>> sendAndFlush(KafkaProducer<byte[], byte[]> producer, List<byte[][]> records) {
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        for (byte[][] kv : records) acks.add(producer.send(new ProducerRecord<>(topic, 0, kv[0], kv[1])));
        producer.flush();
        return acks;
    }

    static List<byte[][]> keyedRecords(int from, int to) {
        List<byte[][]> out = new ArrayList<>();
        for (int i = from; i < to; i++) out.add(new byte[][] {bytes("key-" + i), bytes("keyed-" + i)});
        return out;
    }

    static void keylessMode() throws Exception {
        List<byte[][]> before = keyedRecords(0, count), after = keyedRecords(count, 2 * count);
        String refused;
        try (KafkaProducer<byte[], byte[]> producer = producer()) {
            step = "producing " + count + " keyed records";
            for (Future<RecordMetadata> f : sendAndFlush(producer, before)) get(f);
            step = "producing a record without a key";
            Future<RecordMetadata> keyless = sendAndFlush(producer, List.<byte[][]>of(new byte[][] {null, bytes("keyless")})).get(0);
            try {
                RecordMetadata md = get(keyless);
                fail("a record without a key was stored on a compacted topic, at offset " + md.offset());
                return;
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof org.apache.kafka.common.InvalidRecordException)) {
                    fail("a record without a key failed with " + e.getCause() + ", expected InvalidRecordException");
                }
                refused = e.getCause().getMessage();
            }
            step = "producing " + count + " more keyed records (after the refusal)";
            for (Future<RecordMetadata> f : sendAndFlush(producer, after)) get(f);
        }
        List<byte[][]> want = new ArrayList<>(before);
        want.addAll(after);

        step = "reading back";
        Properties p = secured();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "kelp-e2e-java-consumer");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        TopicPartition tp = new TopicPartition(topic, 0);
        long end;
        try (KafkaConsumer<byte[], byte[]> consumer =
                new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            consumer.assign(List.of(tp));
            consumer.seekToBeginning(List.of(tp));
            end = consumer.endOffsets(List.of(tp), Duration.ofMillis(msLeft())).get(tp);
            while (consumer.position(tp, Duration.ofMillis(msLeft())) < end) {
                if (expired()) fail("read back stopped at " + got.size() + " records, end offset " + end);
                for (ConsumerRecord<byte[], byte[]> rec : consumer.poll(Duration.ofMillis(Math.min(500, msLeft())))) got.add(rec);
            }
        }
        step = "comparing";
        List<String> errors = new ArrayList<>();
        if (got.size() != want.size()) errors.add("read " + got.size() + " records (end offset " + end + "), expected " + want.size());
        for (int j = 0; j < Math.min(got.size(), want.size()); j++) {
            ConsumerRecord<byte[], byte[]> g = got.get(j);
            if (!Arrays.equals(g.key(), want.get(j)[0]) || !Arrays.equals(g.value(), want.get(j)[1])) {
                errors.add("record " + j + " (offset " + g.offset() + "): " + show(g.key()) + "=" + show(g.value())
                        + ", expected " + show(want.get(j)[0]) + "=" + show(want.get(j)[1]));
            }
        }
        if (!errors.isEmpty()) fail(errors.subList(0, Math.min(25, errors.size())));
        Map<String, Object> s = summary();
        s.put("keyed", want.size());
        s.put("refused", refused);
        ok(s);
    }

    // ---- scram-users ------------------------------------------------------------------------

    /** The (mechanism, iterations) pairs `user` has, as "SCRAM-SHA-512:4096" strings, sorted. */
    static List<String> scramInfo(Admin admin, String user) throws Exception {
        org.apache.kafka.clients.admin.UserScramCredentialsDescription d =
                get(admin.describeUserScramCredentials(List.of(user)).description(user));
        List<String> out = new ArrayList<>();
        for (org.apache.kafka.clients.admin.ScramCredentialInfo c : d.credentialInfos()) {
            out.add(c.mechanism().mechanismName() + ":" + c.iterations());
        }
        java.util.Collections.sort(out);
        return out;
    }

    static void expectInfo(Admin admin, String user, List<String> want) throws Exception {
        List<String> got = scramInfo(admin, user);
        if (!got.equals(want)) fail(step + ": " + user + " has " + got + ", expected " + want);
        stepOk(step + ": " + got);
    }

    /** A failed future's cause, or a failure when it succeeded. */
    static Throwable failure(Future<?> f, String what) throws Exception {
        try {
            get(f);
        } catch (ExecutionException e) {
            return e.getCause();
        }
        fail(what + ": succeeded, expected an error");
        return null;
    }

    /**
     * Admin on SCRAM credentials (KIP-554): upsert --scram-user with SCRAM-SHA-512 (4096
     * iterations) and SCRAM-SHA-256 (8192), describe it (by name and in the list of all users),
     * delete the SHA-256 credential, describe again; a credential with too few iterations is
     * refused (UnacceptableCredentialException) and an unknown user is not found
     * (ResourceNotFoundException). Leaves the user with its SCRAM-SHA-512 credential.
     */
    static void scramUsers() throws Exception {
        var sha512 = org.apache.kafka.clients.admin.ScramMechanism.SCRAM_SHA_512;
        var sha256 = org.apache.kafka.clients.admin.ScramMechanism.SCRAM_SHA_256;
        String user = scramUser;
        try (Admin admin = adminClient()) {
            step = "upserting " + user + " (SCRAM-SHA-512 x4096, SCRAM-SHA-256 x8192)";
            get(admin.alterUserScramCredentials(List.of(
                    new org.apache.kafka.clients.admin.UserScramCredentialUpsertion(user, new org.apache.kafka.clients.admin.ScramCredentialInfo(sha512, 4096), scramPassword),
                    new org.apache.kafka.clients.admin.UserScramCredentialUpsertion(user, new org.apache.kafka.clients.admin.ScramCredentialInfo(sha256, 8192), scramPassword))).all());
            stepOk(step);

            step = "describing " + user;
            expectInfo(admin, user, List.of("SCRAM-SHA-256:8192", "SCRAM-SHA-512:4096"));

            step = "describing every user";
            Map<String, org.apache.kafka.clients.admin.UserScramCredentialsDescription> all =
                    get(admin.describeUserScramCredentials().all());
            if (!all.containsKey(user)) fail(step + ": " + user + " not among " + all.keySet());
            stepOk(step + ": " + all.size() + " users");

            step = "deleting the SCRAM-SHA-256 credential of " + user;
            get(admin.alterUserScramCredentials(List.of(
                    new org.apache.kafka.clients.admin.UserScramCredentialDeletion(user, sha256))).all());
            stepOk(step);

            step = "describing " + user + " after the deletion";
            expectInfo(admin, user, List.of("SCRAM-SHA-512:4096"));

            step = "upserting " + user + " with 1000 iterations (too few)";
            Throwable e = failure(admin.alterUserScramCredentials(List.of(
                    new org.apache.kafka.clients.admin.UserScramCredentialUpsertion(user, new org.apache.kafka.clients.admin.ScramCredentialInfo(sha256, 1000), scramPassword))).all(), step);
            if (!(e instanceof org.apache.kafka.common.errors.UnacceptableCredentialException)) fail(step + ": " + e);
            stepOk(step + ": refused");
            step = "describing " + user + " after the refusal";
            expectInfo(admin, user, List.of("SCRAM-SHA-512:4096"));

            String nobody = user + "-nobody";
            step = "describing the unknown user " + nobody;
            e = failure(admin.describeUserScramCredentials(List.of(nobody)).description(nobody), step);
            if (!(e instanceof org.apache.kafka.common.errors.ResourceNotFoundException)) fail(step + ": " + e);
            stepOk(step + ": not found");
        }
        Map<String, Object> s = summary();
        s.put("user", user);
        s.put("steps", 8);
        ok(s);
    }

    // ---- produce refused: --expect-authorization-error ----------------------------------------

    /**
     * The subject of the first certificate in a PEM file, as Java names it:
     * X500Principal.getName(), RFC 2253, most specific first. Kafka's principal for an SSL
     * client is "User:" and this (with the default ssl.principal.mapping.rules).
     */
    static String certificateSubject(String pem) {
        try (java.io.InputStream in = new java.io.FileInputStream(pem)) {
            var certs = java.security.cert.CertificateFactory.getInstance("X.509").generateCertificates(in);
            if (certs.isEmpty()) fail("no certificate in " + pem);
            return ((java.security.cert.X509Certificate) certs.iterator().next()).getSubjectX500Principal().getName();
        } catch (Exception e) {
            fail("reading the certificate " + pem + ": " + e);
            return null;
        }
    }

    /**
     * Produces the records of a produce-verify run and expects every send to fail with
     * TopicAuthorizationException naming --topic: the principal may not write (or describe) it.
     * An acknowledged record, or any other error, fails the run. A send refused before it
     * reaches the broker (the topic's metadata was refused: send() returns a failed future)
     * ends the sending: each further one would wait for a metadata refresh, and the client
     * backs those off up to a second apart.
     */
    static void produceRefused() throws Exception {
        List<Expected> records = makeRecords(count);
        step = "producing " + count + " records, each to be refused with TopicAuthorizationException";
        List<String> unexpected = new ArrayList<>();
        String refusal = null;
        List<Future<RecordMetadata>> acks = new ArrayList<>(records.size());
        KafkaProducer<byte[], byte[]> producer = producer();
        try {
            for (Expected r : records) {
                Future<RecordMetadata> ack = producer.send(new ProducerRecord<>(topic, r.partition, r.timestamp, r.key, r.value));
                acks.add(ack);
                if (failedAlready(ack)) break;
            }
            producer.flush();
            for (int k = 0; k < acks.size(); k++) {
                try {
                    RecordMetadata md = get(acks.get(k));
                    unexpected.add("record " + k + ": acked at partition " + md.partition() + " offset " + md.offset());
                } catch (ExecutionException e) {
                    if (e.getCause() instanceof org.apache.kafka.common.errors.TopicAuthorizationException t
                            && t.unauthorizedTopics().contains(topic)) {
                        refusal = t.getClass().getSimpleName() + ": " + t.getMessage();
                    } else {
                        unexpected.add("record " + k + ": failed with " + e.getCause());
                    }
                }
            }
        } finally {
            producer.close(Duration.ofMillis(msLeft()));
        }
        if (!unexpected.isEmpty()) {
            List<String> out = new ArrayList<>(unexpected.subList(0, Math.min(20, unexpected.size())));
            out.add(unexpected.size() + " of " + acks.size() + " sends were not refused with TopicAuthorizationException for " + topic);
            fail(out);
        }
        Map<String, Object> s = summary();
        s.put("refused", acks.size());
        s.put("authorization_error", refusal);
        ok(s);
    }

    /** Whether `f` has completed with an exception. */
    static boolean failedAlready(Future<?> f) {
        if (!f.isDone()) return false;
        try {
            f.get();
            return false;
        } catch (Exception e) {
            return true;
        }
    }

    // ---- acls: Admin on ACL bindings ----------------------------------------------------------

    static final String ALICE = "User:alice", MALLORY = "User:mallory";

    static org.apache.kafka.common.acl.AclBinding binding(org.apache.kafka.common.resource.ResourceType type, String name,
            org.apache.kafka.common.resource.PatternType pattern, String principal,
            org.apache.kafka.common.acl.AclOperation op, org.apache.kafka.common.acl.AclPermissionType permission) {
        return new org.apache.kafka.common.acl.AclBinding(
                new org.apache.kafka.common.resource.ResourcePattern(type, name, pattern),
                new org.apache.kafka.common.acl.AccessControlEntry(principal, "*", op, permission));
    }

    /** A binding as one comparable line: TYPE:PATTERN:name principal@host OPERATION PERMISSION. */
    static String line(org.apache.kafka.common.acl.AclBinding b) {
        var r = b.pattern();
        var e = b.entry();
        return r.resourceType() + ":" + r.patternType() + ":" + r.name() + " " + e.principal() + "@" + e.host() + " "
                + e.operation() + " " + e.permissionType();
    }

    static java.util.TreeSet<String> lines(java.util.Collection<org.apache.kafka.common.acl.AclBinding> bs) {
        java.util.TreeSet<String> out = new java.util.TreeSet<>();
        for (var b : bs) out.add(line(b));
        return out;
    }

    /** describeAcls(filter) must give exactly `want` (once each: Kafka keeps no duplicates). */
    static void expectAcls(Admin admin, String what, org.apache.kafka.common.acl.AclBindingFilter filter,
            List<org.apache.kafka.common.acl.AclBinding> want) throws Exception {
        step = "describeAcls " + what;
        var got = get(admin.describeAcls(filter).values());
        if (got.size() != lines(got).size()) fail(step + ": a binding came back twice: " + got);
        if (!lines(got).equals(lines(want))) fail(step + ": got " + lines(got) + ", expected " + lines(want));
        stepOk(step + ": " + got.size() + " bindings");
    }

    /** A topic-name filter: every binding whose pattern is `pattern` with `name`. */
    static org.apache.kafka.common.acl.AclBindingFilter onTopic(String name, org.apache.kafka.common.resource.PatternType pattern) {
        return new org.apache.kafka.common.acl.AclBindingFilter(
                new org.apache.kafka.common.resource.ResourcePatternFilter(org.apache.kafka.common.resource.ResourceType.TOPIC, name, pattern),
                org.apache.kafka.common.acl.AccessControlEntryFilter.ANY);
    }

    /** An entry filter: bindings of `principal` (null: anyone) with `permission`, any host and operation. */
    static org.apache.kafka.common.acl.AclBindingFilter ofEntry(String principal, org.apache.kafka.common.acl.AclPermissionType permission) {
        return new org.apache.kafka.common.acl.AclBindingFilter(org.apache.kafka.common.resource.ResourcePatternFilter.ANY,
                new org.apache.kafka.common.acl.AccessControlEntryFilter(principal, null, org.apache.kafka.common.acl.AclOperation.ANY, permission));
    }

    /**
     * Creates five bindings (User:alice: LITERAL ALLOW READ and DESCRIBE on topic T, PREFIXED
     * ALLOW WRITE on P, LITERAL ALLOW READ on the group; User:mallory: DENY WRITE on every topic,
     * the LITERAL wildcard "*"), describes them with filters and checks exactly what comes back,
     * deletes User:alice's topic bindings with one filter and checks what was deleted and what
     * remains, and has invalid bindings refused with InvalidRequestException (a CLUSTER resource
     * not named kafka-cluster, a principal without a type) while a valid one in the same request
     * is accepted.
     */
    static void acls() throws Exception {
        var TOPIC = org.apache.kafka.common.resource.ResourceType.TOPIC;
        var GROUP = org.apache.kafka.common.resource.ResourceType.GROUP;
        var LITERAL = org.apache.kafka.common.resource.PatternType.LITERAL;
        var PREFIXED = org.apache.kafka.common.resource.PatternType.PREFIXED;
        var MATCH = org.apache.kafka.common.resource.PatternType.MATCH;
        var ALLOW = org.apache.kafka.common.acl.AclPermissionType.ALLOW;
        var DENY = org.apache.kafka.common.acl.AclPermissionType.DENY;
        var READ = org.apache.kafka.common.acl.AclOperation.READ;
        var WRITE = org.apache.kafka.common.acl.AclOperation.WRITE;
        var DESCRIBE = org.apache.kafka.common.acl.AclOperation.DESCRIBE;
        int dash = topic.lastIndexOf('-');
        if (dash < 1 || dash == topic.length() - 1) usageError("--mode acls wants a --topic like orders-eu (P is the part up to the last '-')");
        String prefix = topic.substring(0, dash + 1), sibling = prefix + "sibling", grp = group != null ? group : topic + "-readers";

        var topicRead = binding(TOPIC, topic, LITERAL, ALICE, READ, ALLOW);
        var topicDescribe = binding(TOPIC, topic, LITERAL, ALICE, DESCRIBE, ALLOW);
        var prefixWrite = binding(TOPIC, prefix, PREFIXED, ALICE, WRITE, ALLOW);
        var groupRead = binding(GROUP, grp, LITERAL, ALICE, READ, ALLOW);
        var denyAll = binding(TOPIC, "*", LITERAL, MALLORY, WRITE, DENY);
        List<org.apache.kafka.common.acl.AclBinding> all = List.of(topicRead, topicDescribe, prefixWrite, groupRead, denyAll);
        int steps = 0;
        try (Admin admin = adminClient()) {
            step = "createAcls (5 bindings)";
            get(admin.createAcls(all).all());
            stepOk(step + ": " + lines(all));
            steps++;

            expectAcls(admin, "ANY", org.apache.kafka.common.acl.AclBindingFilter.ANY, all);
            expectAcls(admin, "principal " + ALICE, ofEntry(ALICE, org.apache.kafka.common.acl.AclPermissionType.ANY),
                    List.of(topicRead, topicDescribe, prefixWrite, groupRead));
            expectAcls(admin, "permission DENY", ofEntry(null, DENY), List.of(denyAll));
            expectAcls(admin, "LITERAL topic " + topic, onTopic(topic, LITERAL), List.of(topicRead, topicDescribe));
            expectAcls(admin, "PREFIXED topic " + prefix, onTopic(prefix, PREFIXED), List.of(prefixWrite));
            // MATCH: the literal name, the wildcard and every prefix of the name.
            expectAcls(admin, "MATCH topic " + topic, onTopic(topic, MATCH), List.of(topicRead, topicDescribe, prefixWrite, denyAll));
            expectAcls(admin, "MATCH topic " + sibling, onTopic(sibling, MATCH), List.of(prefixWrite, denyAll));
            expectAcls(admin, "MATCH topic elsewhere", onTopic("elsewhere", MATCH), List.of(denyAll));
            steps += 8;

            step = "deleteAcls of " + ALICE + "'s topic bindings";
            var filter = new org.apache.kafka.common.acl.AclBindingFilter(
                    new org.apache.kafka.common.resource.ResourcePatternFilter(TOPIC, null, org.apache.kafka.common.resource.PatternType.ANY),
                    new org.apache.kafka.common.acl.AccessControlEntryFilter(ALICE, null, org.apache.kafka.common.acl.AclOperation.ANY,
                            org.apache.kafka.common.acl.AclPermissionType.ANY));
            var nothing = ofEntry("User:nobody", org.apache.kafka.common.acl.AclPermissionType.ANY);
            var deletion = admin.deleteAcls(List.of(filter, nothing));
            List<org.apache.kafka.common.acl.AclBinding> deleted = new ArrayList<>();
            for (var r : get(deletion.values().get(filter)).values()) {
                if (r.exception() != null) fail(step + ": " + r.exception());
                deleted.add(r.binding());
            }
            if (!lines(deleted).equals(lines(List.of(topicRead, topicDescribe, prefixWrite)))) {
                fail(step + ": deleted " + lines(deleted) + ", expected " + lines(List.of(topicRead, topicDescribe, prefixWrite)));
            }
            var none = get(deletion.values().get(nothing)).values();
            if (!none.isEmpty()) fail(step + ": a filter matching nothing deleted " + none);
            stepOk(step + ": " + lines(deleted) + "; a filter for User:nobody deleted nothing");
            expectAcls(admin, "ANY after the deletion", org.apache.kafka.common.acl.AclBindingFilter.ANY, List.of(groupRead, denyAll));
            expectAcls(admin, "MATCH topic " + topic + " after the deletion", onTopic(topic, MATCH), List.of(denyAll));
            steps += 3;

            step = "createAcls of invalid bindings (with a valid one)";
            var badCluster = binding(org.apache.kafka.common.resource.ResourceType.CLUSTER, "not-kafka-cluster", LITERAL, ALICE,
                    org.apache.kafka.common.acl.AclOperation.ALTER, ALLOW);
            var badPrincipal = binding(TOPIC, topic, LITERAL, "alice", READ, ALLOW);
            var again = binding(GROUP, grp, LITERAL, ALICE, READ, ALLOW); // exists already
            var created = admin.createAcls(List.of(badCluster, badPrincipal, again)).values();
            for (var bad : List.of(badCluster, badPrincipal)) {
                Throwable e = failure(created.get(bad), step + ": " + line(bad));
                if (!(e instanceof org.apache.kafka.common.errors.InvalidRequestException)) {
                    fail(step + ": " + line(bad) + " failed with " + e + ", expected InvalidRequestException");
                }
            }
            get(created.get(again));
            stepOk(step + ": both refused with InvalidRequestException, the valid one accepted");
            expectAcls(admin, "ANY after the refusals", org.apache.kafka.common.acl.AclBindingFilter.ANY, List.of(groupRead, denyAll));
            steps += 2;
        }
        Map<String, Object> s = summary();
        s.put("steps", steps);
        s.put("created", all.size());
        s.put("deleted", 3);
        s.put("remaining", 2);
        ok(s);
    }

    // ---- produce and group ------------------------------------------------------------------

    static void produceMode() throws Exception {
        if (create) {
            step = "create topic " + topic;
            try (Admin admin = adminClient()) {
                get(admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all());
            }
        }
        List<Expected> records = new ArrayList<>(count);
        long now = System.currentTimeMillis();
        for (int i = first; i < first + count; i++) {
            records.add(new Expected(i, i % partitions, bytes("k" + i), bytes("v" + i), List.of(), now));
        }
        produce(records);
        int[] per = new int[partitions];
        for (Expected r : records) {
            if (r.ackedOffset == null || r.ackedPartition != r.partition) fail("record " + r.i + " not acked on partition " + r.partition);
            per[r.partition]++;
        }
        Map<String, Object> s = summary();
        s.put("mode", "produce");
        s.put("first", first);
        s.put("records", records.size());
        s.put("per_partition", Arrays.stream(per).boxed().toList());
        ok(s);
    }

    static final List<String> history = new ArrayList<>();
    static final java.util.TreeSet<Integer> owned = new java.util.TreeSet<>();

    static void emit(String event, String fields) {
        System.out.println("{\"event\":" + json(event) + ",\"t_ms\":" + System.currentTimeMillis() + (fields.isEmpty() ? "" : "," + fields) + "}");
        System.out.flush();
    }

    // ---- describe-group: what kafka-consumer-groups.sh --list --type and
    // --describe --members --verbose read through the Admin client --------------------------

    static String partitionsOf(org.apache.kafka.clients.admin.MemberAssignment a) {
        java.util.TreeSet<Integer> ps = new java.util.TreeSet<>();
        for (TopicPartition tp : a.topicPartitions()) if (tp.topic().equals(topic)) ps.add(tp.partition());
        return ints(ps);
    }

    static void describeGroup() throws Exception {
        try (Admin admin = adminClient()) {
            step = "listing consumer groups (listGroups, KIP-1043 type filter)";
            String listedType = "absent", listedState = "absent";
            for (org.apache.kafka.clients.admin.GroupListing l
                    : admin.listGroups(org.apache.kafka.clients.admin.ListGroupsOptions.forConsumerGroups()).all().get()) {
                if (l.groupId().equals(group)) {
                    listedType = l.type().map(Object::toString).orElse("none");
                    listedState = l.groupState().map(Object::toString).orElse("none");
                }
            }
            step = "describing group " + group + " (describeConsumerGroups)";
            org.apache.kafka.clients.admin.ConsumerGroupDescription d =
                    admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get();
            StringBuilder members = new StringBuilder("[");
            for (org.apache.kafka.clients.admin.MemberDescription m : d.members()) {
                if (members.length() > 1) members.append(",");
                members.append("{\"member_id\":").append(json(m.consumerId()))
                        .append(",\"client_id\":").append(json(m.clientId()))
                        .append(",\"host\":").append(json(m.host()))
                        .append(",\"partitions\":").append(partitionsOf(m.assignment()))
                        .append(",\"target\":").append(m.targetAssignment().map(JavaClient::partitionsOf).orElse("null"))
                        .append(",\"member_epoch\":").append(m.memberEpoch().map(String::valueOf).orElse("null"))
                        .append("}");
            }
            members.append("]");
            emit("described", "\"listed_type\":" + json(listedType) + ",\"listed_state\":" + json(listedState)
                    + ",\"type\":" + json(String.valueOf(d.type())) + ",\"state\":" + json(String.valueOf(d.groupState()))
                    + ",\"assignor\":" + json(d.partitionAssignor())
                    + ",\"group_epoch\":" + d.groupEpoch().map(String::valueOf).orElse("null")
                    + ",\"assignment_epoch\":" + d.targetAssignmentEpoch().map(String::valueOf).orElse("null")
                    + ",\"members\":" + members);
        }
    }

    static String ints(java.util.Collection<Integer> xs) {
        StringBuilder sb = new StringBuilder("[");
        for (int x : xs) sb.append(sb.length() > 1 ? "," : "").append(x);
        return sb.append("]").toString();
    }

    static void change(String event, java.util.Collection<TopicPartition> tps) {
        java.util.TreeSet<Integer> ps = new java.util.TreeSet<>();
        for (TopicPartition tp : tps) if (tp.topic().equals(topic)) ps.add(tp.partition());
        if (event.equals("assigned")) {
            owned.addAll(ps);
            step = "consuming in group " + group;
        } else {
            owned.removeAll(ps);
        }
        String fields = "\"partitions\":" + ints(ps) + ",\"owned\":" + ints(owned);
        history.add("{\"event\":" + json(event) + ",\"t_ms\":" + System.currentTimeMillis() + "," + fields + "}");
        emit(event, fields);
    }

    static void groupMode() throws Exception {
        Properties p = secured();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "kelp-e2e-java-" + groupProtocol + "-" + ProcessHandle.current().pid());
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG, 100);
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, maxBatch);
        if (groupProtocol.equals("classic")) {
            // The KIP-848 protocol takes these from the broker and refuses them here.
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 1_000);
        }
        List<String> consumed = new ArrayList<>();
        int commitFailures = 0;
        long lastRecord = 0;
        String reason = null;
        // The consumer is built (classes loaded, nothing sent to the broker yet) before the
        // member reports ready, so the first-join time measures the group join, not JVM warm-up.
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            emit("ready", "");
            if (startFile != null) {
                step = "waiting for the start file " + startFile;
                while (!new java.io.File(startFile).exists()) Thread.sleep(20);
            }
            emit("start", "\"group\":" + json(group) + ",\"group_protocol\":" + json(groupProtocol));
            step = "waiting for the first assignment in group " + group + " (" + groupProtocol + " protocol)";
            consumer.subscribe(List.of(topic), new org.apache.kafka.clients.consumer.ConsumerRebalanceListener() {
                public void onPartitionsRevoked(java.util.Collection<TopicPartition> tps) {
                    change("revoked", tps);
                }

                public void onPartitionsAssigned(java.util.Collection<TopicPartition> tps) {
                    change("assigned", tps);
                }

                public void onPartitionsLost(java.util.Collection<TopicPartition> tps) {
                    change("lost", tps);
                }
            });
            while (reason == null) {
                var records = consumer.poll(Duration.ofMillis(200));
                if (!records.isEmpty()) {
                    StringBuilder batch = new StringBuilder("[");
                    java.util.TreeMap<Integer, Long> next = new java.util.TreeMap<>();
                    for (ConsumerRecord<byte[], byte[]> r : records) {
                        String rec = "[" + r.partition() + "," + r.offset() + "," + json(r.key() == null ? "" : new String(r.key(), StandardCharsets.UTF_8)) + "]";
                        consumed.add(rec);
                        batch.append(batch.length() > 1 ? "," : "").append(rec);
                        next.merge(r.partition(), r.offset() + 1, Math::max);
                    }
                    emit("batch", "\"records\":" + batch.append("]"));
                    lastRecord = System.nanoTime();
                    try {
                        consumer.commitSync(Duration.ofSeconds(30)); // the positions after this batch
                    } catch (org.apache.kafka.common.KafkaException e) { // CommitFailed, RebalanceInProgress, ...
                        commitFailures++;
                        StringBuilder offs = new StringBuilder("[");
                        next.forEach((q, n) -> offs.append(offs.length() > 1 ? "," : "").append("[").append(q).append(",").append(n).append("]"));
                        emit("commit_failed", "\"offsets\":" + offs.append("]") + ",\"error\":" + json(e.getClass().getSimpleName() + ": " + e.getMessage()));
                    }
                    if (batchDelayMs > 0) Thread.sleep(batchDelayMs);
                }
                if (stopFile != null && new java.io.File(stopFile).exists()) reason = "stop-file";
                else if (idleExit > 0 && lastRecord != 0 && System.nanoTime() - lastRecord >= (long) (idleExit * 1e9)) reason = "idle";
            }
            step = "leaving group " + group;
        } // close(): every batch was committed; this leaves the group
        StringBuilder sb = new StringBuilder("{\"event\":\"summary\",\"t_ms\":" + System.currentTimeMillis());
        sb.append(",\"client\":\"kafka-clients (Java)\",\"version\":").append(json(AppInfoParser.getVersion()));
        sb.append(",\"mode\":\"group\",\"group\":").append(json(group)).append(",\"group_protocol\":").append(json(groupProtocol));
        sb.append(",\"topic\":").append(json(topic)).append(",\"stopped_by\":").append(json(reason));
        sb.append(",\"consumed\":[").append(String.join(",", consumed)).append("]");
        sb.append(",\"assignments\":[").append(String.join(",", history)).append("]");
        sb.append(",\"commit_failures\":").append(commitFailures).append("}");
        System.out.println(sb);
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
