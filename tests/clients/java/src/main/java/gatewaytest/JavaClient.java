package gatewaytest;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

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
 * </pre>
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
