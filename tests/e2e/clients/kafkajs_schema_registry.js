#!/usr/bin/env node
// kelp end-to-end client: kafkajs 2 with @kafkajs/confluent-schema-registry 4 against kelp's
// broker and its built-in schema registry.
//
//   node kafkajs_schema_registry.js BOOTSTRAP REGISTRY_URL TOPIC_PREFIX COUNT [TIMEOUT_S]
//
// For each of Avro, Protobuf and JSON Schema, under the subject "<prefix>-<format>-value":
//   - registry.register(schema, { subject }) gives the schema its id (the library first asks
//     GET /config/{subject}, and on a 404 sets the subject's compatibility to BACKWARD after
//     registering);
//   - registering the same schema again gives the same id, and so do getLatestSchemaId(subject)
//     and getRegistryIdBySchema(subject, schema);
//   - COUNT values are encoded with registry.encode(id, value) and produced with a kafkajs
//     producer (acks=all) to the topic "<prefix>-<format>" (3 partitions, made with the admin API).
// Then one kafkajs consumer in a group reads the three topics from the beginning and decodes each
// record with registry.decode(buffer) through a second SchemaRegistry instance, whose cache is
// empty, so the writer schema is fetched from kelp by id (GET /schemas/ids/{id}). Every record
// must come back exactly once and decode to the value that was sent.
//
// Prints one JSON line: per format the subject, the ids seen, and the records read back. Exits 1
// with what went wrong (on stderr, and as {"error": ...} on stdout) at the first failure.
'use strict'

const os = require('os')
const path = require('path')

const PARTITIONS = 3
const SEND_CHUNK = 50

const argv = process.argv.slice(2)
if (argv.length < 4 || argv.length > 5) {
  process.stderr.write('usage: kafkajs_schema_registry.js BOOTSTRAP REGISTRY_URL TOPIC_PREFIX COUNT [TIMEOUT_S]\n')
  process.exit(2)
}
const [bootstrap, registryUrl, prefix] = argv
const count = Number(argv[3])
const timeoutS = argv.length > 4 ? Number(argv[4]) : 120
if (!Number.isInteger(count) || count < 1) {
  process.stderr.write('COUNT must be a positive integer\n')
  process.exit(2)
}

const out = {}
let step = 'starting'

function fail(msg) {
  const text = `${step}: ${msg}`
  process.stdout.write(JSON.stringify({ error: text, seen: out }) + '\n')
  process.stderr.write(`FAIL: ${text}\n`, () => process.exit(1))
  setTimeout(() => process.exit(1), 500).unref()
}

setTimeout(() => fail(`timed out after ${timeoutS}s`), timeoutS * 1000).unref()

// ---- the libraries ----------------------------------------------------------------------------

function load(name) {
  try {
    return require(name)
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e
  }
  const dir = process.env.KELP_CLIENTS_DIR || path.join(os.homedir(), '.cache', 'kelp-clients')
  return require(path.join(dir, 'node', 'node_modules', name))
}

step = 'loading kafkajs and @kafkajs/confluent-schema-registry'
const { Kafka, logLevel } = load('kafkajs')
const { SchemaRegistry, SchemaType } = load('@kafkajs/confluent-schema-registry')
out.versions = {
  kafkajs: load('kafkajs/package.json').version,
  schema_registry: load('@kafkajs/confluent-schema-registry/package.json').version,
}

const logs = []
const kafka = new Kafka({
  clientId: 'kelp-e2e-kafkajs-sr',
  brokers: [bootstrap],
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, log }) => {
    logs.push(`${namespace}: ${log.message}`)
    if (logs.length > 20) logs.shift()
  },
})

// ---- the three schemas and their values -------------------------------------------------------

const AVRO_SCHEMA = JSON.stringify({
  type: 'record',
  name: 'Reading',
  namespace: 'kelp.e2e',
  fields: [
    { name: 'id', type: 'long' },
    { name: 'sensor', type: 'string' },
    { name: 'celsius', type: 'double' },
    { name: 'note', type: ['null', 'string'], default: null },
    { name: 'level', type: { type: 'enum', name: 'Level', symbols: ['LOW', 'MID', 'HIGH'] } },
    { name: 'tags', type: { type: 'array', items: 'string' } },
    { name: 'counts', type: { type: 'map', values: 'int' } },
  ],
})

// proto3 leaves fields at their default value out of the encoding, and a decoded message shows
// only the fields that were set: every value below is non-default, so what comes back is exactly
// what was sent.
const PROTO_SCHEMA = `syntax = "proto3";
package kelp.e2e;

message Shipment {
  int32 id = 1;
  string destination = 2;
  double weight = 3;
  repeated string items = 4;
  Address address = 5;
  bool fragile = 6;
}

message Address {
  string street = 1;
  int32 number = 2;
}
`

const JSON_SCHEMA = JSON.stringify({
  $schema: 'http://json-schema.org/draft-07/schema#',
  title: 'Invoice',
  type: 'object',
  properties: {
    id: { type: 'integer' },
    customer: { type: 'string' },
    total: { type: 'number' },
    paid: { type: 'boolean' },
    lines: {
      type: 'array',
      items: {
        type: 'object',
        properties: { sku: { type: 'string' }, qty: { type: 'integer', minimum: 1 } },
        required: ['sku', 'qty'],
      },
    },
    memo: { type: ['string', 'null'] },
  },
  required: ['id', 'customer', 'total', 'lines'],
  additionalProperties: false,
})

const FORMATS = [
  {
    name: 'avro',
    schema: { type: SchemaType.AVRO, schema: AVRO_SCHEMA },
    make: i => ({
      id: 1e12 + i,
      sensor: `sensor-${i % 7}`,
      celsius: (i % 50) - 10.25,
      note: i % 3 === 0 ? null : `note ${i} \u00e9\u4e2d`,
      level: ['LOW', 'MID', 'HIGH'][i % 3],
      tags: Array.from({ length: i % 4 }, (_, k) => `t${k}`),
      counts: i % 2 ? {} : { a: i, b: -i },
    }),
  },
  {
    name: 'protobuf',
    schema: { type: SchemaType.PROTOBUF, schema: PROTO_SCHEMA },
    make: i => ({
      id: i + 1,
      destination: `city-${i}`,
      weight: i + 0.5,
      items: Array.from({ length: 1 + (i % 3) }, (_, k) => `item-${i}-${k}`),
      address: { street: `street ${i % 11}`, number: 1 + i },
      fragile: true,
    }),
  },
  {
    name: 'json',
    schema: { type: SchemaType.JSON, schema: JSON_SCHEMA },
    make: i => ({
      id: i,
      customer: `customer-${i % 13}`,
      total: i * 1.5,
      paid: i % 2 === 0,
      lines: Array.from({ length: i % 3 }, (_, k) => ({ sku: `sku-${k}`, qty: k + 1 })),
      memo: i % 5 === 0 ? null : `memo ${i}`,
    }),
  },
]

// A value as plain JSON with its object keys sorted: avsc's records and protobufjs's messages
// are class instances, and a protobufjs message turns into JSON through its toJSON.
function canonical(value) {
  const sort = v => {
    if (Array.isArray(v)) return v.map(sort)
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort().map(k => [k, sort(v[k])]))
    }
    return v
  }
  return JSON.stringify(sort(JSON.parse(JSON.stringify(value))))
}

// ---- registering, producing, consuming --------------------------------------------------------

async function register(registry, f) {
  const subject = `${prefix}-${f.name}-value`
  step = `${f.name}: registering under ${subject}`
  const { id } = await registry.register(f.schema, { subject })
  if (!Number.isInteger(id) || id < 1) throw new Error(`register answered id ${JSON.stringify(id)}`)
  step = `${f.name}: registering the same schema again under ${subject}`
  const again = (await registry.register(f.schema, { subject })).id
  step = `${f.name}: getLatestSchemaId(${subject})`
  const latest = await registry.getLatestSchemaId(subject)
  step = `${f.name}: getRegistryIdBySchema(${subject})`
  const bySchema = await registry.getRegistryIdBySchema(subject, f.schema)
  if (again !== id || latest !== id || bySchema !== id) {
    throw new Error(`ids differ: register ${id}, again ${again}, latest ${latest}, by schema ${bySchema}`)
  }
  out[f.name] = { subject, topic: `${prefix}-${f.name}`, id, again_id: again, latest_id: latest, by_schema_id: bySchema }
}

async function produce(registry, producer, f) {
  const topic = out[f.name].topic
  const sent = []
  for (let start = 0; start < count; start += SEND_CHUNK) {
    const messages = []
    for (let i = start; i < Math.min(count, start + SEND_CHUNK); i++) {
      const value = f.make(i)
      step = `${f.name}: encoding record ${i}`
      messages.push({ key: String(i), value: await registry.encode(out[f.name].id, value) })
      sent.push(canonical(value))
    }
    step = `${f.name}: producing records ${start}.. to ${topic}`
    const acks = await producer.send({ topic, acks: -1, messages })
    for (const ack of acks) {
      if (ack.errorCode !== 0) throw new Error(`partition ${ack.partition}: produce error code ${ack.errorCode}`)
    }
  }
  f.sent = sent
  out[f.name].produced = sent.length
}

async function consumeAll(decoder) {
  const byTopic = new Map(FORMATS.map(f => [out[f.name].topic, f]))
  const got = new Map(FORMATS.map(f => [f.name, new Map()]))
  const errors = []
  let remaining = FORMATS.length * count
  let resolveDone
  const done = new Promise(resolve => (resolveDone = resolve))
  const consumer = kafka.consumer({
    groupId: `${prefix}-reader`,
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 100,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 2000 },
  })
  consumer.on(consumer.events.CRASH, e => {
    const err = e.payload.error
    if (!e.payload.restart) errors.push(`consumer crashed: ${err && err.name + ': ' + err.message}`)
    if (!e.payload.restart) resolveDone()
  })
  step = 'consuming: joining the group'
  await consumer.connect()
  await consumer.subscribe({ topics: [...byTopic.keys()], fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      step = 'consuming and decoding'
      const f = byTopic.get(topic)
      const i = Number(message.key.toString())
      const where = `${f.name} record ${i} (partition ${partition}, offset ${message.offset})`
      let value
      try {
        value = await decoder.decode(message.value)
      } catch (e) {
        errors.push(`${where}: decode failed: ${e.name}: ${e.message}`)
        return
      }
      const seen = got.get(f.name)
      if (seen.has(i)) {
        errors.push(`${where}: read twice`)
        return
      }
      seen.set(i, canonical(value))
      if (--remaining === 0) resolveDone()
    },
  })
  await done
  step = 'consuming: leaving the group'
  await consumer.disconnect()
  for (const f of FORMATS) {
    const seen = got.get(f.name)
    let same = 0
    for (let i = 0; i < count; i++) {
      if (!seen.has(i)) errors.push(`${f.name} record ${i}: not read back`)
      else if (seen.get(i) !== f.sent[i]) errors.push(`${f.name} record ${i}: sent ${f.sent[i]}, decoded ${seen.get(i)}`)
      else same++
    }
    out[f.name].records = same
  }
  if (errors.length) {
    const shown = errors.slice(0, 10)
    if (errors.length > 10) shown.push(`... and ${errors.length - 10} more`)
    throw new Error(shown.join('\n'))
  }
}

async function main() {
  // The producing side: registers, then encodes with the schemas it registered.
  const registry = new SchemaRegistry({ host: registryUrl, clientId: 'kelp-e2e-producer' })
  for (const f of FORMATS) await register(registry, f)

  step = 'creating the topics'
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: FORMATS.map(f => ({ topic: out[f.name].topic, numPartitions: PARTITIONS, replicationFactor: 1 })),
    waitForLeaders: true,
    timeout: 30000,
  })
  await admin.disconnect()
  if (!created) throw new Error('the topics already existed')

  step = 'connecting the producer'
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  for (const f of FORMATS) await produce(registry, producer, f)
  await producer.disconnect()

  // The consuming side knows no schema: it asks kelp for each writer schema by id.
  const decoder = new SchemaRegistry({ host: registryUrl, clientId: 'kelp-e2e-consumer' })
  await consumeAll(decoder)

  out.client = 'kafkajs'
  process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0))
}

main().catch(e => {
  const status = e && e.status ? ` (HTTP ${e.status} ${e.url || ''})` : ''
  fail(`${(e && e.name) || 'Error'}: ${e && e.message}${status}${logs.length ? '\nkafkajs said:\n' + logs.join('\n') : ''}`)
})
