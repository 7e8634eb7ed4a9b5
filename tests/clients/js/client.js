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
//   group-consume  {topic, groupId, expected, timeoutMs, idleMs, sessionTimeout, heartbeatInterval}
//                  consumer.run (eachMessage) in group groupId, subscribed fromBeginning; after each
//                  message commitOffsets(offset + 1). Stops once it has `expected` messages and then
//                  `idleMs` passed with no new message (and at least 2 fetches after the last one).
//                                                            -> {messages: [{partition, offset, key, value}],
//                                                                join: {memberId, generationId, isLeader,
//                                                                groupProtocol, memberAssignment},
//                                                                committed: [{partition, offset}],
//                                                                timedOut, crash}
//                  exit 3 (with the result on stdout) when that does not happen within timeoutMs.
//   fetch-offsets  {groupId, topic}                          -> [{partition, offset, metadata}]
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
  if (command === 'group-consume') {
    out = await groupConsume(kafka, req);
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(out.timedOut || out.crash ? 3 : 0);
  }
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
      } else if (command === 'fetch-offsets') {
        const res = await admin.fetchOffsets({ groupId: req.groupId, topics: [req.topic] });
        out = res.length ? res[0].partitions : [];
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

async function groupConsume(kafka, req) {
  const consumer = kafka.consumer({
    groupId: req.groupId,
    sessionTimeout: req.sessionTimeout || 10000,
    heartbeatInterval: req.heartbeatInterval || 1000,
    rebalanceTimeout: 30000,
    maxWaitTimeInMs: 200,
    allowAutoTopicCreation: false,
    retry: { retries: 5, initialRetryTime: 300, maxRetryTime: 5000 },
  });
  const messages = [];
  let join = null;
  let crash = null;
  let fetchesSinceMessage = 0;
  let lastEvent = Date.now();
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    join = e.payload;
    lastEvent = Date.now();
  });
  consumer.on(consumer.events.FETCH, () => {
    fetchesSinceMessage += 1;
  });
  consumer.on(consumer.events.CRASH, (e) => {
    crash = String(e.payload && e.payload.error && e.payload.error.stack ? e.payload.error.stack : e.payload.error);
  });
  const started = Date.now();
  let timedOut = false;
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [req.topic], fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ topic, partition, message }) => {
        messages.push({
          partition,
          offset: message.offset,
          key: message.key === null ? null : message.key.toString('base64'),
          value: message.value === null ? null : message.value.toString('base64'),
        });
        fetchesSinceMessage = 0;
        lastEvent = Date.now();
        await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      },
    });
    for (;;) {
      if (crash) break;
      if (join && messages.length >= req.expected && Date.now() - lastEvent >= req.idleMs && fetchesSinceMessage >= 2) break;
      if (Date.now() - started > req.timeoutMs) {
        timedOut = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await consumer.disconnect();
  }
  const admin = kafka.admin();
  await admin.connect();
  let committed;
  try {
    const res = await admin.fetchOffsets({ groupId: req.groupId, topics: [req.topic] });
    committed = res.length ? res[0].partitions.map((p) => ({ partition: p.partition, offset: p.offset })) : [];
  } finally {
    await admin.disconnect();
  }
  return {
    messages,
    join: join && {
      memberId: join.memberId,
      generationId: join.generationId,
      isLeader: join.isLeader,
      groupProtocol: join.groupProtocol,
      memberAssignment: join.memberAssignment,
    },
    committed,
    timedOut,
    crash,
  };
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write('ERROR ' + (e && e.stack ? e.stack : String(e)) + '\n');
    if (e && e.type) process.stderr.write('KAFKAJS_ERROR_TYPE ' + e.type + '\n');
    process.exit(2);
  },
);
