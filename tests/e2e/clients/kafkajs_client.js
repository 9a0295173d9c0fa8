#!/usr/bin/env node
// kelp end-to-end client: kafkajs 2 against a running broker.
//
//   node kafkajs_client.js --bootstrap 127.0.0.1:9092 --topic t --mode produce-verify \
//       [--compression snappy] [--count 1000] [--create] [--timeout 60]
//
// kafkajs is loaded from NODE_PATH, else from ${KELP_CLIENTS_DIR:-~/.cache/kelp-clients}/node
// (scripts/install-clients.sh). It compresses gzip by itself and snappy with kafkajs-snappy;
// lz4 and zstd need codec packages that build native code, so this client does not offer them.
//
// Mode produce-verify: produce N keyed records with headers and explicit timestamps to partitions
// i % 3 (in sends of 100 records, acks=all), take each record's offset from its partition's
// acked base offset, then read everything back and compare record by record.
//
// kafkajs has no assign(): its consumer always joins a group. To read without a group this
// client asks kafkajs's own cluster object (the one its producer and consumer are built on) for
// the partition leaders and sends Fetch requests through kafkajs's broker connection, so the
// Fetch encoding and record-batch decoding are still kafkajs's. That is kafkajs's internal API
// (src/cluster, src/broker), stable across the 2.x line, which has had no release since 2.2.4.
//
// kafkajs headers are an object: a repeated key must be an array (so repeats are adjacent), and
// its encoder throws on a null header value, so those records carry an empty value instead.
//
// Mode produce: N records key "k{i}", value "v{i}" to partition i % P (--first, --partitions).
//
// Mode group: one member of --group: subscribe (fromBeginning, so a lost commit shows), eachBatch
// with autoCommit off, the batch handled in slices of --max-batch records, each slice committed
// with commitOffsets before the next, kafkajs's round-robin assignor (the one every kafkajs member
// offers), until --stop-file exists or --idle-exit seconds pass without records. kafkajs is eager
// and has no revoke callback: REBALANCING prints a revoke of everything owned, GROUP_JOIN the new
// assignment. Output: one JSON object per line, as e2e_common.py describes.
//
// Security: --security-protocol, --sasl-*, --ssl-* (as e2e_common.py describes) become kafkajs's
// `ssl` ({ca, cert, key}, PEM text) and `sasl` ({mechanism, username, password}) options.
//
// Exit 0 with a one-line JSON summary when every check passed; exit 1 with what differed.
'use strict'

const os = require('os')
const path = require('path')

const PARTITIONS = 3
const SEND_CHUNK = 100
const USAGE = `usage: kafkajs_client.js --bootstrap HOST:PORT --topic NAME --mode produce-verify|produce|group
       [--compression none|gzip|snappy] [--count N] [--create] [--timeout SECONDS]
       [--first I] [--partitions P] [--group NAME] [--stop-file PATH] [--start-file PATH]
       [--idle-exit S] [--max-batch N] [--batch-delay-ms MS]
       [--security-protocol PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL]
       [--sasl-mechanism SCRAM-SHA-512|SCRAM-SHA-256|PLAIN --sasl-username U --sasl-password P]
       [--ssl-ca PEM] [--ssl-cert PEM --ssl-key PEM] [--ssl-keystore PEM (ignored)]

  --create      create the topic (3 partitions) with the admin API first
  --count N     records to produce (default 1000)
  --timeout S   give up (exit 1) after this long in all (default 60)`

// ---- output and the watchdog ------------------------------------------------------------------

const seen = new Map() // client log lines -> times seen, newest last
let step = 'starting'

function note(text) {
  const n = seen.get(text) || 0
  seen.delete(text)
  seen.set(text, n + 1)
  while (seen.size > 50) seen.delete(seen.keys().next().value)
}

function fail(lines) {
  if (!Array.isArray(lines)) lines = [lines]
  const said = [...seen.entries()].slice(-15).map(([t, n]) => `client said: ${t}` + (n > 1 ? ` (x${n})` : ''))
  const all = said.concat(lines)
  all[all.length - 1] = 'FAIL: ' + all[all.length - 1]
  process.stderr.write(all.join('\n') + '\n', () => process.exit(1))
  setTimeout(() => process.exit(1), 500).unref()
}

function parseArgs(argv) {
  const a = { compression: 'none', count: 1000, create: false, timeout: 60, first: 0, partitions: 6, idleExit: 0, maxBatch: 500, batchDelayMs: 0 }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    const value = () => {
      if (i + 1 >= argv.length) usageError(`${flag} needs a value`)
      return argv[++i]
    }
    switch (flag) {
      case '--bootstrap': a.bootstrap = value(); break
      case '--topic': a.topic = value(); break
      case '--mode': a.mode = value(); break
      case '--compression': a.compression = value(); break
      case '--count': a.count = Number(value()); break
      case '--timeout': a.timeout = Number(value()); break
      case '--create': a.create = true; break
      case '--group': a.group = value(); break
      case '--stop-file': a.stopFile = value(); break
      case '--start-file': a.startFile = value(); break
      case '--idle-exit': a.idleExit = Number(value()); break
      case '--max-batch': a.maxBatch = Number(value()); break
      case '--batch-delay-ms': a.batchDelayMs = Number(value()); break
      case '--first': a.first = Number(value()); break
      case '--partitions': a.partitions = Number(value()); break
      case '--security-protocol': a.securityProtocol = value(); break
      case '--sasl-mechanism': a.saslMechanism = value(); break
      case '--sasl-username': a.saslUsername = value(); break
      case '--sasl-password': a.saslPassword = value(); break
      case '--ssl-ca': a.sslCa = value(); break
      case '--ssl-cert': a.sslCert = value(); break
      case '--ssl-key': a.sslKey = value(); break
      case '--ssl-keystore': a.sslKeystore = value(); break
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break
      default: usageError(`unknown argument ${flag}`)
    }
  }
  if (!a.bootstrap || !a.topic || !a.mode) usageError('--bootstrap, --topic and --mode are required')
  if (!['produce-verify', 'produce', 'group'].includes(a.mode)) {
    usageError(`--mode ${a.mode}: kafkajs_client.js has produce-verify, produce and group`)
  }
  if (a.mode === 'group' && !a.group) usageError('--mode group needs --group NAME')
  if (!['none', 'gzip', 'snappy'].includes(a.compression)) {
    usageError(`--compression ${a.compression}: kafkajs_client.js offers none, gzip, snappy`)
  }
  if (!Number.isInteger(a.count) || a.count < 1) usageError('--count must be a positive integer')
  if (!(a.timeout > 0)) usageError('--timeout must be positive')
  checkSecurityArgs(a)
  return a
}

// The security flags every client program takes (e2e_common.py describes them). PLAINTEXT, the
// default, leaves kafkajs's configuration as it always was. --ssl-keystore is the Java client's
// key+chain file: accepted, not used (kafkajs takes --ssl-cert and --ssl-key).
const SECURITY_PROTOCOLS = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL']
const SASL_MECHANISMS = { 'SCRAM-SHA-512': 'scram-sha-512', 'SCRAM-SHA-256': 'scram-sha-256', PLAIN: 'plain' }

function checkSecurityArgs(a) {
  a.securityProtocol = a.securityProtocol || 'PLAINTEXT'
  if (!SECURITY_PROTOCOLS.includes(a.securityProtocol)) usageError(`unknown --security-protocol ${a.securityProtocol}`)
  const sasl = a.securityProtocol.startsWith('SASL_')
  const saslFlags = [a.saslMechanism, a.saslUsername, a.saslPassword]
  if (sasl && saslFlags.some((f) => f === undefined)) {
    usageError(`--security-protocol ${a.securityProtocol} needs --sasl-mechanism, --sasl-username and --sasl-password`)
  }
  if (!sasl && saslFlags.some((f) => f !== undefined)) usageError('--sasl-* flags need a SASL --security-protocol')
  if (sasl && !(a.saslMechanism in SASL_MECHANISMS)) usageError(`unknown --sasl-mechanism ${a.saslMechanism}`)
  const tls = a.securityProtocol.endsWith('SSL')
  if (!tls && [a.sslCa, a.sslCert, a.sslKey, a.sslKeystore].some((f) => f !== undefined)) {
    usageError('--ssl-* flags need an SSL --security-protocol')
  }
  if ((a.sslCert === undefined) !== (a.sslKey === undefined)) usageError('--ssl-cert and --ssl-key go together')
}

// kafkajs's `ssl` and `sasl` options for the security flags; {} for PLAINTEXT.
function securityConfig(a) {
  const fs = require('fs')
  const out = {}
  if (a.securityProtocol.endsWith('SSL')) {
    const ssl = { rejectUnauthorized: true }
    if (a.sslCa) ssl.ca = [fs.readFileSync(a.sslCa, 'utf8')]
    if (a.sslCert) ssl.cert = fs.readFileSync(a.sslCert, 'utf8')
    if (a.sslKey) ssl.key = fs.readFileSync(a.sslKey, 'utf8')
    out.ssl = ssl
  }
  if (a.securityProtocol.startsWith('SASL_')) {
    out.sasl = { mechanism: SASL_MECHANISMS[a.saslMechanism], username: a.saslUsername, password: a.saslPassword }
  }
  return out
}

// What summaries say about security (never the password); {} for PLAINTEXT, so the summaries
// of plaintext runs are as they always were.
function securitySummary(a) {
  if (a.securityProtocol === 'PLAINTEXT') return {}
  const out = { security_protocol: a.securityProtocol }
  if (a.securityProtocol.startsWith('SASL_')) Object.assign(out, { sasl_mechanism: a.saslMechanism, sasl_username: a.saslUsername })
  if (a.securityProtocol.endsWith('SSL')) out.client_certificate = a.sslCert !== undefined
  return out
}

function usageError(msg) {
  process.stderr.write(`${USAGE}\nerror: ${msg}\n`)
  process.exit(2)
}

const args = parseArgs(process.argv.slice(2))
const deadline = Date.now() + args.timeout * 1000
const msLeft = () => Math.max(100, deadline - Date.now())
setTimeout(() => fail(`timed out after ${args.timeout}s during: ${step}`), args.timeout * 1000)

// ---- kafkajs ----------------------------------------------------------------------------------

function load(name) {
  try {
    return require(name)
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e
  }
  const dir = process.env.KELP_CLIENTS_DIR || path.join(os.homedir(), '.cache', 'kelp-clients')
  return require(path.join(dir, 'node', 'node_modules', name))
}

step = 'loading kafkajs'
const { Kafka, CompressionTypes, CompressionCodecs, Partitioners, PartitionAssigners, logLevel } = load('kafkajs')
CompressionCodecs[CompressionTypes.Snappy] = load('kafkajs-snappy')
const KAFKAJS_VERSION = load('kafkajs/package.json').version
const COMPRESSION = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP, snappy: CompressionTypes.Snappy }

const logCreator = () => ({ namespace, level, log }) => {
  const { message, ...extra } = log
  delete extra.timestamp
  delete extra.logger
  delete extra.stack
  note(`${namespace}: ${message} ${JSON.stringify(extra)}`)
}

const kafka = new Kafka({
  clientId: 'kelp-e2e-kafkajs',
  brokers: [args.bootstrap],
  connectionTimeout: 3000,
  requestTimeout: 10000,
  retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
  logLevel: logLevel.WARN,
  logCreator,
  ...securityConfig(args),
})

// ---- the records ------------------------------------------------------------------------------

function recordValue(i) {
  if (i % 50 === 7) return Buffer.alloc(0)
  if (i % 50 === 23) return null
  return Buffer.from(`value-${i}:` + 'kelp-e2e-'.repeat(i % 17))
}

// 1 to 3 headers, as a list of [key, value]; the repeated key is adjacent (kafkajs needs that).
function recordHeaders(i) {
  const idx = ['idx', Buffer.from(String(i))]
  switch (Math.floor(i / PARTITIONS) % 3) {
    case 0: return [idx]
    case 1: return [idx, ['empty', Buffer.alloc(0)]]
    default: return [idx, ['dup', Buffer.from('first')], ['dup', Buffer.from('second')]]
  }
}

// kafkajs's header object for a list of [key, value] with repeats adjacent.
function headerObject(list) {
  const obj = {}
  for (const [k, v] of list) {
    if (!(k in obj)) obj[k] = v
    else if (Array.isArray(obj[k])) obj[k].push(v)
    else obj[k] = [obj[k], v]
  }
  return obj
}

// The object kafkajs decodes back into a list of [key, value] in key order.
function headerList(obj) {
  const list = []
  for (const k of Object.keys(obj || {})) {
    for (const v of Array.isArray(obj[k]) ? obj[k] : [obj[k]]) list.push([k, v])
  }
  return list
}

function makeRecords(count) {
  const base = Math.floor(Date.now() / 1000) * 1000 - 600000
  const records = []
  for (let i = 0; i < count; i++) {
    records.push({
      i,
      partition: i % PARTITIONS,
      key: Buffer.from(`key-${i}`),
      value: recordValue(i),
      headers: recordHeaders(i),
      timestamp: base + i,
      ackedPartition: null,
      ackedOffset: null,
    })
  }
  return records
}

// ---- produce ----------------------------------------------------------------------------------

async function createTopic(numPartitions = PARTITIONS) {
  step = `create topic ${args.topic}`
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({
    topics: [{ topic: args.topic, numPartitions, replicationFactor: 1 }],
    timeout: Math.min(30000, msLeft()),
  })
  await admin.disconnect()
  if (!created) throw new Error(`topic ${args.topic} already existed`)
}

async function produce(records) {
  step = 'connecting the producer'
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false })
  await producer.connect()
  step = `producing ${records.length} records (${args.compression})`
  for (let start = 0; start < records.length; start += SEND_CHUNK) {
    const chunk = records.slice(start, start + SEND_CHUNK)
    const acks = await producer.send({
      topic: args.topic,
      acks: -1,
      compression: COMPRESSION[args.compression],
      messages: chunk.map(r => ({
        partition: r.partition,
        key: r.key,
        value: r.value,
        headers: headerObject(r.headers),
        timestamp: String(r.timestamp),
      })),
    })
    // One ack per partition: its records got baseOffset, baseOffset + 1, ... in send order.
    for (const ack of acks) {
      if (ack.errorCode !== 0) throw new Error(`partition ${ack.partition}: produce error code ${ack.errorCode}`)
      let offset = Number(ack.baseOffset)
      for (const r of chunk.filter(r => r.partition === ack.partition)) {
        r.ackedPartition = ack.partition
        r.ackedOffset = offset++
      }
    }
  }
  await producer.disconnect()
}

// ---- read back without a group ----------------------------------------------------------------

function internalCluster() {
  const create = Object.getOwnPropertySymbols(kafka).find(s => s.description === 'private:Kafka:createCluster')
  if (!create) throw new Error(`kafkajs ${KAFKAJS_VERSION} no longer has the cluster factory this client uses`)
  return kafka[create]({ metadataMaxAge: 300000, allowAutoTopicCreation: false })
}

async function readBack(counts) {
  step = 'connecting the reader'
  const cluster = internalCluster()
  await cluster.connect()
  await cluster.addTargetTopic(args.topic)
  const partitions = [...Array(PARTITIONS).keys()]
  const leaders = cluster.findLeaderForPartitions(args.topic, partitions)
  const positions = partitions.map(() => 0)
  const highWatermarks = partitions.map(() => null)
  const got = []
  step = `reading back ${counts.reduce((a, b) => a + b)} records`
  while (partitions.some(p => positions[p] < counts[p])) {
    if (Date.now() >= deadline) throw new Error(`read back stopped at offsets ${positions}, expected ${counts}`)
    for (const [nodeId, parts] of Object.entries(leaders)) {
      const broker = await cluster.findBroker({ nodeId })
      const { responses } = await broker.fetch({
        replicaId: -1,
        isolationLevel: 1,
        maxWaitTime: 100,
        minBytes: 1,
        maxBytes: 10 << 20,
        topics: [
          {
            topic: args.topic,
            partitions: parts.map(p => ({ partition: p, fetchOffset: String(positions[p]), maxBytes: 4 << 20 })),
          },
        ],
      })
      for (const { partitions: results } of responses) {
        for (const res of results) {
          if (res.errorCode !== 0) throw new Error(`fetch partition ${res.partition}: error code ${res.errorCode}`)
          highWatermarks[res.partition] = Number(res.highWatermark)
          for (const m of res.messages) {
            const offset = Number(m.offset)
            // A batch can start before the fetch offset: skip what was already read.
            if (offset < positions[res.partition] || m.isControlRecord) continue
            got.push({
              partition: res.partition,
              offset,
              key: m.key,
              value: m.value,
              headers: headerList(m.headers),
              timestamp: Number(m.timestamp),
              timestampType: m.batchContext && m.batchContext.timestampType === 0 ? 'CreateTime' : 'LogAppendTime',
            })
            positions[res.partition] = offset + 1
          }
        }
      }
    }
  }
  await cluster.disconnect()
  return { got, highWatermarks }
}

// ---- checks -----------------------------------------------------------------------------------

const show = v => (v === null ? 'null' : Buffer.isBuffer(v) ? JSON.stringify(v.toString('latin1')) : JSON.stringify(v))
const showHeaders = hs => '[' + hs.map(([k, v]) => `${k}=${show(v)}`).join(', ') + ']'
const sameBytes = (a, b) => (a === null || b === null ? a === b : Buffer.isBuffer(b) && a.equals(b))
const sameHeaders = (a, b) =>
  a.length === b.length && a.every(([k, v], j) => k === b[j][0] && sameBytes(v, b[j][1]))

function verify(records, got, counts, highWatermarks) {
  const errors = []
  for (let p = 0; p < PARTITIONS; p++) {
    const sent = records.filter(r => r.partition === p)
    sent.forEach((r, k) => {
      if (r.ackedPartition !== p || r.ackedOffset !== k) {
        errors.push(`record ${r.i}: send #${k} to partition ${p} acked at partition ${r.ackedPartition} offset ${r.ackedOffset}`)
      }
    })
    const offsets = got.filter(g => g.partition === p).map(g => g.offset)
    if (offsets.length !== counts[p] || offsets.some((o, k) => o !== k)) {
      errors.push(`partition ${p}: read ${offsets.length} records, offsets ${offsets.slice(0, 4)}..., expected 0..${counts[p] - 1}`)
    }
    if (highWatermarks[p] !== counts[p]) {
      errors.push(`partition ${p}: high watermark ${highWatermarks[p]}, expected ${counts[p]}`)
    }
  }
  const byOffset = new Map(records.map(r => [`${r.ackedPartition}/${r.ackedOffset}`, r]))
  for (const g of got) {
    const r = byOffset.get(`${g.partition}/${g.offset}`)
    if (!r) {
      errors.push(`partition ${g.partition} offset ${g.offset}: read a record no send was acked with`)
      continue
    }
    const where = `record ${r.i} (partition ${g.partition}, offset ${g.offset})`
    if (!sameBytes(r.key, g.key)) errors.push(`${where}: key differs: expected ${show(r.key)}, got ${show(g.key)}`)
    if (!sameBytes(r.value, g.value)) {
      errors.push(`${where}: value differs: expected ${show(r.value)}, got ${show(g.value)}`)
    }
    if (!sameHeaders(r.headers, g.headers)) {
      errors.push(`${where}: headers differ: expected ${showHeaders(r.headers)}, got ${showHeaders(g.headers)}`)
    }
    if (r.timestamp !== g.timestamp) errors.push(`${where}: timestamp differs: expected ${r.timestamp}, got ${g.timestamp}`)
    if (g.timestampType !== 'CreateTime') errors.push(`${where}: timestamp type ${g.timestampType}, expected CreateTime`)
  }
  return errors.length > 25 ? errors.slice(0, 25).concat([`... and ${errors.length - 25} more differences`]) : errors
}

// ---- main -------------------------------------------------------------------------------------

// ---- produce and group ------------------------------------------------------------------------

const fs = require('fs')
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

function emit(event, fields = {}) {
  const line = JSON.stringify({ event, t_ms: Date.now(), ...fields })
  process.stdout.write(line + '\n')
  return line
}

async function produceMode() {
  if (args.create) await createTopic(args.partitions)
  const records = []
  const now = Date.now()
  for (let i = args.first; i < args.first + args.count; i++) {
    records.push({ i, partition: i % args.partitions, key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`), headers: [], timestamp: now })
  }
  await produce(records)
  const per = Array(args.partitions).fill(0)
  for (const r of records) {
    if (r.ackedOffset === null || r.ackedPartition !== r.partition) throw new Error(`record ${r.i} not acked on partition ${r.partition}`)
    per[r.partition]++
  }
  const summary = { client: 'kafkajs', version: KAFKAJS_VERSION, mode: 'produce', topic: args.topic, first: args.first, records: records.length, per_partition: per, ...securitySummary(args) }
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(0))
}

async function groupMode() {
  emit('ready')
  if (args.startFile) {
    step = `waiting for the start file ${args.startFile}`
    while (!fs.existsSync(args.startFile)) await sleep(20)
  }
  emit('start', { group: args.group })
  step = `waiting for the first assignment in group ${args.group}`
  const consumed = []
  const history = []
  let owned = new Set()
  let commitFailures = 0
  let lastRecord = null
  let stopping = false
  const change = (event, parts) => {
    parts = [...parts].sort((a, b) => a - b)
    if (event === 'assigned') {
      for (const p of parts) owned.add(p)
      step = `consuming in group ${args.group}`
    } else {
      for (const p of parts) owned.delete(p)
    }
    const fields = { partitions: parts, owned: [...owned].sort((a, b) => a - b) }
    history.push({ event, t_ms: Date.now(), ...fields })
    emit(event, fields)
  }
  const consumer = kafka.consumer({
    groupId: args.group,
    partitionAssigners: [PartitionAssigners.roundRobin],
    sessionTimeout: 10000,
    heartbeatInterval: 1000,
    maxWaitTimeInMs: 100,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 2000 },
  })
  consumer.on(consumer.events.REBALANCING, () => {
    if (owned.size) change('revoked', owned)
  })
  consumer.on(consumer.events.GROUP_JOIN, e => {
    if (owned.size) change('revoked', owned) // eager: a new generation replaces everything
    change('assigned', (e.payload.memberAssignment || {})[args.topic] || [])
  })
  consumer.on(consumer.events.CRASH, e => {
    const err = e.payload.error
    note(`consumer crashed (restart: ${e.payload.restart}): ${err && (err.name + ': ' + err.message)}`)
    if (!e.payload.restart) fail(`${step}: consumer crashed: ${err && (err.name + ': ' + err.message)}`)
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [args.topic], fromBeginning: true })
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      for (let at = 0; at < batch.messages.length; at += args.maxBatch) {
        if (stopping || !isRunning() || isStale()) return
        const slice = batch.messages.slice(at, at + args.maxBatch)
        const recs = slice.map(m => [batch.partition, Number(m.offset), m.key ? m.key.toString() : ''])
        for (const r of recs) consumed.push(r)
        lastRecord = Date.now()
        emit('batch', { records: recs })
        const next = String(Number(slice[slice.length - 1].offset) + 1)
        try {
          await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }])
        } catch (err) {
          commitFailures++
          emit('commit_failed', { offsets: [[batch.partition, Number(next)]], error: `${err.name}: ${err.message}` })
        }
        resolveOffset(slice[slice.length - 1].offset)
        await heartbeat()
        if (args.batchDelayMs > 0) await sleep(args.batchDelayMs)
      }
    },
  })
  let reason = null
  while (reason === null) {
    await sleep(100)
    if (args.stopFile && fs.existsSync(args.stopFile)) reason = 'stop-file'
    else if (args.idleExit > 0 && lastRecord !== null && Date.now() - lastRecord >= args.idleExit * 1000) reason = 'idle'
  }
  stopping = true
  step = `leaving group ${args.group}`
  await consumer.disconnect() // every slice was committed; this leaves the group
  const summary = {
    event: 'summary', t_ms: Date.now(), client: 'kafkajs', version: KAFKAJS_VERSION, mode: 'group', group: args.group,
    topic: args.topic, stopped_by: reason, consumed, assignments: history, commit_failures: commitFailures,
    ...securitySummary(args),
  }
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(0))
}

async function main() {
  if (args.mode === 'produce') return produceMode()
  if (args.mode === 'group') return groupMode()
  if (args.create) await createTopic()
  const records = makeRecords(args.count)
  await produce(records)
  const counts = [...Array(PARTITIONS).keys()].map(p => records.filter(r => r.partition === p).length)
  const { got, highWatermarks } = await readBack(counts)
  step = 'comparing'
  const errors = verify(records, got, counts, highWatermarks)
  if (errors.length) return fail(errors.concat([`${errors.length} differences in ${records.length} records`]))
  const summary = {
    client: 'kafkajs',
    version: KAFKAJS_VERSION,
    mode: args.mode,
    topic: args.topic,
    compression: args.compression,
    records: records.length,
    per_partition: counts,
    ...securitySummary(args),
  }
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(0))
}

main().catch(e => fail(`${step}: ${e.name || 'Error'}: ${e.message}`))
