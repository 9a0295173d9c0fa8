// kelp end-to-end client: transactions with kafkajs.
//
//   node kafkajs_txn.js mixed BOOTSTRAP TOPIC TXN_ID ROUNDS
//   node kafkajs_txn.js read BOOTSTRAP TOPIC read_committed|read_uncommitted EXPECT
//
// mixed  a transactional producer runs ROUNDS rounds over the topic's 2 partitions: a
//        transaction of four records "{id}-c{round}-{j}" that commits, then one of four
//        "{id}-a{round}-{j}" that aborts (record j to partition j % 2). Prints
//        {"committed": [...], "aborted": [...]} in partition, then send order.
// read   a consumer of group "kafkajs-reader-{pid}" reads the topic from the start with the
//        isolation level given until EXPECT records arrived (then 2 s more); prints
//        {"values": [...]} in partition, then offset order.
//
// kafkajs is loaded from NODE_PATH, else from ${KELP_CLIENTS_DIR:-~/.cache/kelp-clients}/node.
// Exit 0 when every call succeeded; 1 with the error.

const os = require('os')
const path = require('path')

function load(name) {
  try {
    return require(name)
  } catch (e) {
    const dir = process.env.KELP_CLIENTS_DIR || path.join(os.homedir(), '.cache', 'kelp-clients')
    return require(path.join(dir, 'node', 'node_modules', name))
  }
}

const { Kafka, logLevel } = load('kafkajs')
const [mode, bootstrap, topic, third, fourth] = process.argv.slice(2)
const kafka = new Kafka({ clientId: 'kelp-e2e-txn', brokers: [bootstrap], logLevel: logLevel.NOTHING })

async function mixed(id, rounds) {
  const producer = kafka.producer({ transactionalId: id, maxInFlightRequests: 1, idempotent: true })
  await producer.connect()
  const committed = [[], []]
  const aborted = [[], []]
  for (let r = 0; r < rounds; r++) {
    for (const [kind, into] of [['c', committed], ['a', aborted]]) {
      const txn = await producer.transaction()
      const messages = [[], []]
      for (let j = 0; j < 4; j++) {
        const value = `${id}-${kind}${r}-${j}`
        messages[j % 2].push({ key: `k${j}`, value })
        into[j % 2].push(value)
      }
      await txn.sendBatch({
        topicMessages: [{ topic, messages: messages[0].map((m) => ({ ...m, partition: 0 })).concat(messages[1].map((m) => ({ ...m, partition: 1 }))) }],
      })
      if (kind === 'c') await txn.commit()
      else await txn.abort()
    }
  }
  await producer.disconnect()
  console.log(JSON.stringify({ committed: committed[0].concat(committed[1]), aborted: aborted[0].concat(aborted[1]) }))
}

async function read(isolation, expect) {
  const consumer = kafka.consumer({
    groupId: `kafkajs-reader-${process.pid}`,
    readUncommitted: isolation === 'read_uncommitted',
  })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const byPartition = { 0: [], 1: [] }
  let seen = 0
  let quietSince = null
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      byPartition[partition].push(message.value.toString())
      seen++
      if (seen >= expect && quietSince === null) quietSince = Date.now()
    },
  })
  const deadline = Date.now() + 60000
  while (Date.now() < deadline && (quietSince === null || Date.now() < quietSince + 2000)) {
    await new Promise((r) => setTimeout(r, 100))
  }
  await consumer.disconnect()
  console.log(JSON.stringify({ values: byPartition[0].concat(byPartition[1]) }))
}

const run = mode === 'mixed' ? mixed(third, Number(fourth)) : read(third, Number(fourth))
run.then(
  () => process.exit(0),
  (e) => {
    console.log(JSON.stringify({ failed: String(e && e.stack ? e.stack : e) }))
    process.exit(1)
  },
)
