// KafkaJS 2.2.4 helper for the kafka-gateway client suite (run by test_kafkajs.py).
//
//   node client.js BOOTSTRAP COMMAND < request.json > result.json
//
// Commands (request and result are JSON; bytes are base64 strings, null stays null):
//   create-topic   {topic, partitions}                       -> {created}
//   produce        {topic, compression: "none"|"gzip", acks,
//                   messages: [{partition, key, value, timestamp, headers: {name: value|[values]}}]}
//                                                            -> [{partition, baseOffset, errorCode}]
//   offsets        {topic}                                   -> [{partition, offset, high, low}]
//   offsets-by-ts  {topic, timestamp}                        -> [{partition, offset}]
//   list-topics    {}                                        -> [names]
// Exit 0 on success; 2 with the error on stderr otherwise.
'use strict';

process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel, CompressionTypes } = require('kafkajs');

function b(v) {
  return v === null || v === undefined ? null : Buffer.from(v, 'base64');
}

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  const s = Buffer.concat(chunks).toString('utf8').trim();
  return s ? JSON.parse(s) : {};
}

async function main() {
  const [bootstrap, command] = process.argv.slice(2);
  const req = await readStdin();
  const kafka = new Kafka({
    clientId: 'kgw-kafkajs',
    brokers: [bootstrap],
    connectionTimeout: 10000,
    requestTimeout: 30000,
    retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 5000 },
    logLevel: logLevel.WARN,
  });
  let out;
  if (command === 'produce') {
    const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: false });
    await producer.connect();
    try {
      const compression = req.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
      out = await producer.send({
        topic: req.topic,
        acks: req.acks === undefined ? -1 : req.acks,
        timeout: 30000,
        compression,
        messages: req.messages.map((m) => {
          const headers = {};
          for (const [k, v] of Object.entries(m.headers || {})) headers[k] = Array.isArray(v) ? v.map(b) : b(v);
          const msg = { key: b(m.key), value: b(m.value), headers };
          if (m.partition !== undefined && m.partition !== null) msg.partition = m.partition;
          if (m.timestamp !== undefined && m.timestamp !== null) msg.timestamp = String(m.timestamp);
          return msg;
        }),
      });
    } finally {
      await producer.disconnect();
    }
  } else {
    const admin = kafka.admin();
    await admin.connect();
    try {
      if (command === 'create-topic') {
        const created = await admin.createTopics({
          waitForLeaders: true,
          timeout: 30000,
          topics: [{ topic: req.topic, numPartitions: req.partitions, replicationFactor: 1 }],
        });
        out = { created };
      } else if (command === 'offsets') {
        out = await admin.fetchTopicOffsets(req.topic);
      } else if (command === 'offsets-by-ts') {
        out = await admin.fetchTopicOffsetsByTimestamp(req.topic, req.timestamp);
      } else if (command === 'list-topics') {
        out = await admin.listTopics();
      } else {
        throw new Error('unknown command ' + command);
      }
    } finally {
      await admin.disconnect();
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write('ERROR ' + (e && e.stack ? e.stack : String(e)) + '\n');
    if (e && e.type) process.stderr.write('KAFKAJS_ERROR_TYPE ' + e.type + '\n');
    process.exit(2);
  },
);
