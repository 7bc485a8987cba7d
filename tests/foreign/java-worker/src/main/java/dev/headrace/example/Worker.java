package dev.headrace.example;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A Headrace activity worker for one activity, {@code java_echo}, with only kafka-clients.
 *
 * <p>Usage: {@code Worker <bootstrap> <topic prefix> <task queue> <marker dir> [hold]}. For each work
 * item it writes {@code <marker dir>/started-<task_id>}; with {@code hold} it then waits forever (so a
 * test can kill it mid-task), else it answers {@code ["java", <input>]} and commits the offset after
 * the result is acknowledged (at-least-once). Minimal JSON handling by regex keeps it dependency-free.
 */
public final class Worker {
    private static final Pattern STRING_FIELD = Pattern.compile("\"(%s)\"\\s*:\\s*(\"(?:[^\"\\\\]|\\\\.)*\"|null)");
    private static final Pattern TASK_ID = Pattern.compile("\"task_id\"\\s*:\\s*(-?\\d+)");

    private Worker() {}

    static String field(String json, String name) {
        Matcher m = Pattern.compile(String.format(STRING_FIELD.pattern(), Pattern.quote(name))).matcher(json);
        return m.find() ? m.group(2) : null;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], prefix = args[1], queue = args[2];
        Path markers = Path.of(args[3]);
        boolean hold = args.length > 4 && args[4].equals("hold");

        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", prefix + "workers." + queue);
        c.put("enable.auto.commit", "false");
        c.put("isolation.level", "read_committed");
        c.put("auto.offset.reset", "earliest");
        c.put("max.poll.records", "1");
        // A crashed worker's partitions move to another once its session times out (default 45 s).
        c.put("session.timeout.ms", "6000");
        c.put("heartbeat.interval.ms", "2000");
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        p.put("enable.idempotence", "true");

        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c, new StringDeserializer(), new StringDeserializer());
             KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            consumer.subscribe(List.of(prefix + "tasks." + queue));
            System.out.println("ready");
            System.out.flush();
            while (true) {
                for (ConsumerRecord<String, String> item : consumer.poll(Duration.ofMillis(500))) {
                    String v = item.value();
                    String name = field(v, "name");
                    Matcher t = TASK_ID.matcher(v);
                    if (!"\"java_echo\"".equals(name) || !t.find()) {
                        continue; // not ours: a real worker would leave it to another queue's worker
                    }
                    String taskId = t.group(1);
                    Files.writeString(markers.resolve("started-" + taskId), item.offset() + "\n");
                    if (hold) {
                        Thread.sleep(Long.MAX_VALUE);
                    }
                    String input = field(v, "input");
                    String inner = input == null || input.equals("null") ? "null" : input.substring(1, input.length() - 1);
                    String result = "\"[\\\"java\\\", " + inner + "]\"";
                    String answer = "{\"type\": \"ActivityResult\", \"version\": 1, \"instance_id\": " + field(v, "instance_id")
                            + ", \"execution_id\": " + field(v, "execution_id") + ", \"task_id\": " + taskId
                            + ", \"result\": " + result + "}";
                    producer.send(new ProducerRecord<>(prefix + "results", item.key(), answer)).get();
                    consumer.commitSync(Map.of(new TopicPartition(item.topic(), item.partition()),
                            new OffsetAndMetadata(item.offset() + 1)));
                    Files.writeString(markers.resolve("done-" + taskId), item.offset() + "\n");
                }
            }
        }
    }
}
