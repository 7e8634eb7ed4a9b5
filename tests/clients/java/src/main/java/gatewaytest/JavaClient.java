package gatewaytest;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Tiny CLI over kafka-clients, driven by the pytest suite.
 *
 * <pre>
 * java -jar kafka-gateway-java-client.jar produce BOOTSTRAP TOPIC [key=value ...]   (records on stdin)
 * java -jar kafka-gateway-java-client.jar consume BOOTSTRAP TOPIC PARTITIONS COUNT TIMEOUT_MS [key=value ...]
 * java -jar kafka-gateway-java-client.jar group BOOTSTRAP TOPIC GROUP MAX_MS [key=value ...]
 * java -jar kafka-gateway-java-client.jar admin BOOTSTRAP OP [ARGS ...]
 * </pre>
 *
 * group: a long-running consumer group member (subscribe to TOPIC, group.id GROUP, no auto commit,
 * auto.offset.reset=earliest unless overridden). It prints events, one per line, tab separated:
 * "ASSIGNED parts", "REVOKED parts", "LOST parts" (rebalance callbacks; parts = comma separated
 * partition numbers, possibly empty), "ASSIGNMENT parts" (the consumer's whole assignment whenever it
 * changed after a poll), "RECORD " + the record line below for every record, then after each polled
 * batch a synchronous commit of the offsets after it: "COMMITTED p:o,..." or "COMMIT_FAILED exception".
 * With kgw.commit.each.batch=false it makes no commits of its own (pair it with enable.auto.commit=true
 * to see the consumer's own commits, e.g. the one it makes before rejoining a rebalance).
 * A line "close" on stdin (or EOF on stdin, or MAX_MS elapsed) closes the consumer: "CLOSED", exit 0.
 *
 * admin OPs (output lines, tab separated; errors as "ERROR exceptionClass message", exit 0):
 * list-groups -> "GROUP id state" per consumer group (listConsumerGroups);
 * describe-group GROUP -> "DESCRIBE id state assignor simple coordinatorId" and per member
 * "MEMBER memberId instanceId|- clientId host topic:p,...";
 * list-offsets GROUP -> "OFFSET topic partition offset metadata" (listConsumerGroupOffsets);
 * delete-groups GROUP -> "DELETED" (deleteConsumerGroups);
 * delete-offsets GROUP TOPIC PARTS -> "DELETED" (deleteConsumerGroupOffsets, OffsetDelete);
 * describe-topic TOPIC -> "TOPIC name topicId partitions"; create-partitions TOPIC N -> "CREATED";
 * delete-topic TOPIC -> "DELETED".
 *
 * One record per line, tab separated: partition, offset, timestamp, timestampType, key, value, headers.
 * key/value: "-" for null, otherwise "b" followed by base64 (so "b" alone is the empty array).
 * headers: comma separated "NAMEB64:VALUE" with VALUE encoded like key/value; empty field = no headers.
 * For produce, offset and timestampType are ignored, partition "-" lets the partitioner choose and
 * timestamp "-" lets the client stamp it; each acknowledged record is echoed back on stdout with its
 * acknowledged partition, offset and timestamp. consume prints COUNT records (partition order, then
 * offset order as received) and exits 0, or exits 3 after TIMEOUT_MS with what it got.
 * Extra key=value arguments are client properties. Exit 2 on any client error (message on stderr).
 */
public final class JavaClient {
    private static final Base64.Encoder B64E = Base64.getEncoder();
    private static final Base64.Decoder B64D = Base64.getDecoder();

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: produce BOOTSTRAP TOPIC [k=v..] | consume BOOTSTRAP TOPIC PARTS COUNT TIMEOUT_MS [k=v..]");
            System.exit(64);
        }
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try {
            switch (args[0]) {
                case "produce" -> System.exit(produce(args, out));
                case "consume" -> System.exit(consume(args, out));
                case "group" -> System.exit(group(args, out));
                case "admin" -> System.exit(admin(args, out));
                default -> {
                    System.err.println("unknown command " + args[0]);
                    System.exit(64);
                }
            }
        } catch (Exception e) {
            System.err.println("ERROR " + e);
            e.printStackTrace(System.err);
            System.exit(2);
        }
    }

    private static void extraProps(Properties p, String[] args, int from) {
        for (int i = from; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("bad property " + args[i]);
            p.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
    }

    private static byte[] dec(String s) {
        if (s.equals("-")) return null;
        if (!s.startsWith("b")) throw new IllegalArgumentException("bad bytes field " + s);
        return B64D.decode(s.substring(1));
    }

    private static String enc(byte[] b) {
        return b == null ? "-" : "b" + B64E.encodeToString(b);
    }

    private static int produce(String[] args, PrintStream out) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "60000");
        extraProps(p, args, 3);
        String topic = args[2];

        List<ProducerRecord<byte[], byte[]>> recs = new ArrayList<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            if (line.isEmpty()) continue;
            String[] f = line.split("\t", -1);
            if (f.length != 7) throw new IllegalArgumentException("need 7 fields: " + line);
            Integer part = f[0].equals("-") ? null : Integer.valueOf(f[0]);
            Long ts = f[2].equals("-") ? null : Long.valueOf(f[2]);
            List<Header> headers = new ArrayList<>();
            if (!f[6].isEmpty()) {
                for (String h : f[6].split(",", -1)) {
                    int c = h.indexOf(':');
                    String name = new String(B64D.decode(h.substring(0, c)), StandardCharsets.UTF_8);
                    headers.add(new RecordHeader(name, dec(h.substring(c + 1))));
                }
            }
            recs.add(new ProducerRecord<>(topic, part, ts, dec(f[4]), dec(f[5]), headers));
        }

        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (ProducerRecord<byte[], byte[]> r : recs) futures.add(producer.send(r));
            producer.flush();
            for (int i = 0; i < recs.size(); i++) {
                RecordMetadata md = futures.get(i).get(60, TimeUnit.SECONDS);
                ProducerRecord<byte[], byte[]> r = recs.get(i);
                out.println(line(md.partition(), md.offset(), md.timestamp(), "-", r.key(), r.value(), r.headers()));
            }
        }
        return 0;
    }

    private static int consume(String[] args, PrintStream out) throws Exception {
        if (args.length < 6) throw new IllegalArgumentException("consume needs PARTS COUNT TIMEOUT_MS");
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        extraProps(p, args, 6);
        String topic = args[2];
        List<TopicPartition> tps = new ArrayList<>();
        for (String s : args[3].split(",")) tps.add(new TopicPartition(topic, Integer.parseInt(s)));
        int count = Integer.parseInt(args[4]);
        long deadline = System.currentTimeMillis() + Long.parseLong(args[5]);

        int got = 0;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            while (got < count && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    out.println(line(r.partition(), r.offset(), r.timestamp(), r.timestampType().name(),
                            r.key(), r.value(), r.headers()));
                    got++;
                }
            }
        }
        if (got < count) {
            System.err.println("TIMEOUT: consumed " + got + " of " + count + " records");
            return 3;
        }
        return 0;
    }

    private static String parts(Collection<TopicPartition> tps) {
        TreeSet<Integer> ps = new TreeSet<>();
        for (TopicPartition tp : tps) ps.add(tp.partition());
        StringBuilder sb = new StringBuilder();
        for (Integer p : ps) {
            if (sb.length() > 0) sb.append(',');
            sb.append(p);
        }
        return sb.toString();
    }

    private static int group(String[] args, PrintStream out) throws Exception {
        if (args.length < 5) throw new IllegalArgumentException("group needs BOOTSTRAP TOPIC GROUP MAX_MS");
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, args[3]);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        extraProps(p, args, 5);
        boolean commitEachBatch = !"false".equals(p.remove("kgw.commit.each.batch"));
        String topic = args[2];
        long deadline = System.currentTimeMillis() + Long.parseLong(args[4]);

        final boolean[] stop = {false};
        Thread reader = new Thread(() -> {
            try {
                BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
                String l;
                while ((l = in.readLine()) != null) {
                    if (l.trim().equals("close")) break;
                }
            } catch (Exception e) {
                // EOF or broken stdin: close as well
            }
            synchronized (stop) {
                stop[0] = true;
            }
        });
        reader.setDaemon(true);
        reader.start();

        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> tps) {
                    out.println("REVOKED\t" + parts(tps));
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> tps) {
                    out.println("ASSIGNED\t" + parts(tps));
                }

                @Override
                public void onPartitionsLost(Collection<TopicPartition> tps) {
                    out.println("LOST\t" + parts(tps));
                }
            });
            String lastAssignment = null;
            while (System.currentTimeMillis() < deadline) {
                synchronized (stop) {
                    if (stop[0]) break;
                }
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
                String a = parts(consumer.assignment());
                if (!a.equals(lastAssignment)) {
                    out.println("ASSIGNMENT\t" + a);
                    lastAssignment = a;
                }
                if (recs.isEmpty()) continue;
                Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    out.println("RECORD\t" + line(r.partition(), r.offset(), r.timestamp(), r.timestampType().name(),
                            r.key(), r.value(), r.headers()));
                    offs.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                }
                if (!commitEachBatch) continue;
                try {
                    consumer.commitSync(offs, Duration.ofSeconds(30));
                    StringBuilder sb = new StringBuilder();
                    for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) {
                        if (sb.length() > 0) sb.append(',');
                        sb.append(e.getKey().partition()).append(':').append(e.getValue().offset());
                    }
                    out.println("COMMITTED\t" + sb);
                } catch (Exception e) {
                    out.println("COMMIT_FAILED\t" + e);
                }
            }
        }
        out.println("CLOSED");
        return 0;
    }

    private static String errLine(Throwable e) {
        Throwable c = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
        return "ERROR\t" + c.getClass().getSimpleName() + "\t" + String.valueOf(c.getMessage()).replace('\n', ' ');
    }

    @SuppressWarnings("deprecation")
    private static int admin(String[] args, PrintStream out) throws Exception {
        if (args.length < 3) throw new IllegalArgumentException("admin needs BOOTSTRAP OP");
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[1]);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "30000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        String op = args[2];
        try (Admin admin = Admin.create(p)) {
            try {
                switch (op) {
                    case "list-groups" -> {
                        for (ConsumerGroupListing g : admin.listConsumerGroups().all().get(60, TimeUnit.SECONDS)) {
                            out.println("GROUP\t" + g.groupId() + "\t"
                                    + g.groupState().map(Object::toString).orElse("-"));
                        }
                    }
                    case "describe-group" -> {
                        ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(args[3]))
                                .describedGroups().get(args[3]).get(60, TimeUnit.SECONDS);
                        out.println("DESCRIBE\t" + d.groupId() + "\t" + d.groupState() + "\t" + d.partitionAssignor()
                                + "\t" + d.isSimpleConsumerGroup() + "\t"
                                + (d.coordinator() == null ? "-" : String.valueOf(d.coordinator().id())));
                        for (MemberDescription m : d.members()) {
                            StringBuilder tps = new StringBuilder();
                            for (TopicPartition tp : m.assignment().topicPartitions()) {
                                if (tps.length() > 0) tps.append(',');
                                tps.append(tp.topic()).append(':').append(tp.partition());
                            }
                            out.println("MEMBER\t" + m.consumerId() + "\t" + m.groupInstanceId().orElse("-") + "\t"
                                    + m.clientId() + "\t" + m.host() + "\t" + tps);
                        }
                    }
                    case "list-offsets" -> {
                        Map<TopicPartition, OffsetAndMetadata> offs = admin.listConsumerGroupOffsets(args[3])
                                .partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS);
                        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) {
                            OffsetAndMetadata o = e.getValue();
                            out.println("OFFSET\t" + e.getKey().topic() + "\t" + e.getKey().partition() + "\t"
                                    + (o == null ? "-" : o.offset() + "\t" + o.metadata()));
                        }
                    }
                    case "delete-groups" -> {
                        admin.deleteConsumerGroups(List.of(args[3])).all().get(60, TimeUnit.SECONDS);
                        out.println("DELETED");
                    }
                    case "delete-offsets" -> {
                        Set<TopicPartition> tps = new java.util.HashSet<>();
                        for (String s : args[5].split(",")) tps.add(new TopicPartition(args[4], Integer.parseInt(s)));
                        admin.deleteConsumerGroupOffsets(args[3], tps).all().get(60, TimeUnit.SECONDS);
                        out.println("DELETED");
                    }
                    case "describe-topic" -> {
                        org.apache.kafka.clients.admin.TopicDescription d = admin.describeTopics(List.of(args[3]))
                                .allTopicNames().get(60, TimeUnit.SECONDS).get(args[3]);
                        out.println("TOPIC\t" + d.name() + "\t" + d.topicId() + "\t" + d.partitions().size());
                    }
                    case "create-partitions" -> {
                        admin.createPartitions(Map.of(args[3],
                                org.apache.kafka.clients.admin.NewPartitions.increaseTo(Integer.parseInt(args[4]))))
                                .all().get(60, TimeUnit.SECONDS);
                        out.println("CREATED");
                    }
                    case "delete-topic" -> {
                        admin.deleteTopics(List.of(args[3])).all().get(60, TimeUnit.SECONDS);
                        out.println("DELETED");
                    }
                    default -> throw new IllegalArgumentException("unknown admin op " + op);
                }
            } catch (ExecutionException e) {
                out.println(errLine(e));
            }
        }
        return 0;
    }

    private static String line(int part, long off, long ts, String tsType, byte[] k, byte[] v,
                               Iterable<Header> headers) {
        StringBuilder hs = new StringBuilder();
        for (Header h : headers) {
            if (hs.length() > 0) hs.append(',');
            hs.append(B64E.encodeToString(h.key().getBytes(StandardCharsets.UTF_8))).append(':').append(enc(h.value()));
        }
        return part + "\t" + off + "\t" + ts + "\t" + tsType + "\t" + enc(k) + "\t" + enc(v) + "\t" + hs;
    }
}
