'use strict'
// kafkajs against runnel: produce/consume with every codec kafkajs ships (none, gzip), consume from
// the beginning and from a timestamp, admin (topics, configs, partitions, records), the idempotent
// producer, and a 3-member consumer group whose committed offsets survive a restart.

const { describe, it, before, after } = require('node:test')
const assert = require('node:assert/strict')
const crypto = require('node:crypto')
const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes, AssignerProtocol } = require('kafkajs')
const { Runnel, waitUntil } = require('./lib/runnel')

const N = 10_000
const PARTITIONS = 3
const DEADLINE_MS = 60_000
const TEST_TIMEOUT = { timeout: 300_000 }
const CODECS = { none: CompressionTypes.None, gzip: CompressionTypes.GZIP }
const DEFAULT_SOURCES = new Set([5, 4, 3]) // DEFAULT_CONFIG, STATIC_BROKER_CONFIG, DYNAMIC_DEFAULT_BROKER_CONFIG
const DYNAMIC_TOPIC_CONFIG = 1

const unique = prefix => `${prefix}-${crypto.randomBytes(4).toString('hex')}`

function client(r, id = 'kafkajs-compat') {
  return new Kafka({
    clientId: id,
    brokers: [r.bootstrap],
    logLevel: logLevel.ERROR,
    retry: { retries: 10, initialRetryTime: 100, maxRetryTime: 2000 },
  })
}

// Same record shape as the Python tests: record i -> partition i % partitions, explicit CreateTime.
function makeRecords(tag, n = N, partitions = PARTITIONS) {
  const base = Math.floor((Date.now() - 600_000) / 1000) * 1000
  const filler = '0123456789abcdefghij'
  const out = []
  for (let i = 0; i < n; i++) {
    out.push({
      i,
      partition: i % partitions,
      key: `key-${String(i).padStart(6, '0')}`,
      value: `${tag}|value-${i}|${filler.repeat(i % 25)}`,
      headers: { idx: String(i), tag, dup: ['first', 'second'], bin: Buffer.from([i % 256, 0, 255]) },
      ts: base + i,
    })
  }
  return out
}

function byPartition(recs, partitions = PARTITIONS) {
  const out = {}
  for (let p = 0; p < partitions; p++) out[p] = []
  for (const r of recs) out[r.partition].push(r)
  return out
}

async function produceAll(kafka, topic, recs, { compression = CompressionTypes.None, idempotent = false } = {}) {
  const producer = kafka.producer({ idempotent, maxInFlightRequests: 1, allowAutoTopicCreation: false })
  await producer.connect()
  const acked = new Map()
  try {
    for (let k = 0; k < recs.length; k += 500) {
      const chunk = recs.slice(k, k + 500)
      const res = await producer.send({
        topic,
        acks: -1,
        compression,
        messages: chunk.map(r => ({ key: r.key, value: r.value, partition: r.partition, timestamp: String(r.ts), headers: r.headers })),
      })
      // one RecordMetadata per partition: baseOffset of this chunk's records in that partition
      const next = {}
      for (const md of res) {
        assert.equal(md.errorCode, 0, `produce error ${JSON.stringify(md)}`)
        next[md.partition] = Number(md.baseOffset)
      }
      for (const r of chunk) acked.set(r.i, [r.partition, next[r.partition]++])
    }
  } finally {
    await producer.disconnect()
  }
  return acked
}

function norm(v) {
  if (v == null) return v
  if (Array.isArray(v)) return v.map(norm)
  return Buffer.isBuffer(v) ? v.toString('hex') : Buffer.from(String(v)).toString('hex')
}

function checkStreams(exp, got, startOffsets = {}) {
  const problems = []
  for (const [p, recs] of Object.entries(exp)) {
    const start = startOffsets[p] || 0
    const stream = got[p] || []
    if (stream.length !== recs.length) problems.push(`partition ${p}: got ${stream.length} records, expected ${recs.length}`)
    for (let k = 0; k < Math.min(stream.length, recs.length) && problems.length < 20; k++) {
      const e = recs[k]
      const g = stream[k]
      const diffs = []
      if (Number(g.offset) !== start + k) diffs.push(`offset ${g.offset} != ${start + k}`)
      if (g.key.toString() !== e.key) diffs.push(`key ${g.key} != ${e.key}`)
      if (g.value.toString() !== e.value) diffs.push(`value ${String(g.value).slice(0, 80)} != ${e.value.slice(0, 80)}`)
      if (Number(g.timestamp) !== e.ts) diffs.push(`timestamp ${g.timestamp} != ${e.ts}`)
      const gh = JSON.stringify(Object.entries(g.headers || {}).map(([k2, v]) => [k2, norm(v)]))
      const eh = JSON.stringify(Object.entries(e.headers).map(([k2, v]) => [k2, norm(v)]))
      if (gh !== eh) diffs.push(`headers ${gh} != ${eh}`)
      if (diffs.length) problems.push(`partition ${p} position ${k} (record i=${e.i}): ${diffs.join('; ')}`)
    }
  }
  assert.deepEqual(problems, [], 'consumed records differ from produced ones')
}

// Consume with a throwaway group: from the beginning, or (seekTo) from given offsets.
async function consume(kafka, topic, want, { seekTo = null } = {}) {
  const consumer = kafka.consumer({ groupId: unique('kjs-read'), heartbeatInterval: 500, maxWaitTimeInMs: 200 })
  const got = {}
  for (const p of Object.keys(want)) got[p] = []
  const done = () => Object.entries(want).every(([p, n]) => got[p].length >= n)
  const progress = () => Object.entries(want).map(([p, n]) => `p${p}: ${got[p].length}/${n}`).join(', ')
  await consumer.connect()
  try {
    await consumer.subscribe({ topic, fromBeginning: seekTo == null })
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        got[partition].push(message)
      },
    })
    if (seekTo) for (const [p, o] of Object.entries(seekTo)) consumer.seek({ topic, partition: Number(p), offset: String(o) })
    await waitUntil(done, DEADLINE_MS, () => `consumed ${progress()}`)
  } finally {
    await consumer.disconnect()
  }
  return got
}

function configsOf(res, topic) {
  const [r] = res.resources.filter(x => x.resourceName === topic)
  assert.equal(r.errorCode, 0, JSON.stringify(r))
  return Object.fromEntries(r.configEntries.map(e => [e.configName, e]))
}

describe('kafkajs', () => {
  let r
  let kafka
  let admin

  before(async () => {
    r = new Runnel('kafkajs')
    await r.start()
    kafka = client(r)
    admin = kafka.admin()
    await admin.connect()
  })

  after(async () => {
    if (admin) await admin.disconnect()
    if (r) await r.close() // SIGTERM, asserts exit code 0
  })

  for (const [codecName, codec] of Object.entries(CODECS)) {
    it(`produces and consumes 10,000 records with compression ${codecName}`, TEST_TIMEOUT, async () => {
      const topic = unique(`kjs-${codecName}`)
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], timeout: 30000 }), true)
      const recs = makeRecords(`kjs-${codecName}`)
      const exp = byPartition(recs)
      const acked = await produceAll(kafka, topic, recs, { compression: codec })
      for (const rec of recs) assert.deepEqual(acked.get(rec.i), [rec.partition, Math.floor(rec.i / PARTITIONS)])

      const offsets = await admin.fetchTopicOffsets(topic)
      assert.deepEqual(
        offsets.map(o => [o.partition, Number(o.low), Number(o.high)]).sort((a, b) => a[0] - b[0]),
        Object.entries(exp).map(([p, e]) => [Number(p), 0, e.length]),
      )

      const want = Object.fromEntries(Object.entries(exp).map(([p, e]) => [p, e.length]))
      checkStreams(exp, await consume(kafka, topic, want))

      // from a timestamp: ListOffsets by time, then consume from there
      const tMid = recs[recs.length / 2].ts
      const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, tMid)
      const start = {}
      for (const { partition, offset } of byTime) {
        const expected = exp[partition].findIndex(x => x.ts >= tMid)
        assert.equal(Number(offset), expected, `offset for time ${tMid} in partition ${partition}`)
        start[partition] = Number(offset)
      }
      assert.equal(Object.keys(start).length, PARTITIONS)
      const beforeAll = await admin.fetchTopicOffsetsByTimestamp(topic, recs[0].ts - 60_000)
      assert.deepEqual(beforeAll.map(o => Number(o.offset)), [0, 0, 0])
      // past the last record kafkajs substitutes the high watermark for the broker's -1
      const afterAll = await admin.fetchTopicOffsetsByTimestamp(topic, recs[recs.length - 1].ts + 60_000)
      for (const { partition, offset } of afterAll) assert.equal(Number(offset), exp[partition].length)

      const expTail = Object.fromEntries(Object.entries(exp).map(([p, e]) => [p, e.slice(start[p])]))
      const wantTail = Object.fromEntries(Object.entries(expTail).map(([p, e]) => [p, e.length]))
      checkStreams(expTail, await consume(kafka, topic, wantTail, { seekTo: start }), start)
    })
  }

  it('lists, describes, alters and deletes topics and configs', TEST_TIMEOUT, async () => {
    const topic = unique('kjs-admin')
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: 3, replicationFactor: 1, configEntries: [
        { name: 'retention.ms', value: '3600000' },
        { name: 'max.message.bytes', value: '200000' },
      ] }],
      timeout: 30000,
    })
    assert.equal(created, true)
    // TOPIC_ALREADY_EXISTS -> kafkajs answers false
    assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3, replicationFactor: 1 }], timeout: 30000 }), false)

    assert.ok((await admin.listTopics()).includes(topic))
    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    assert.deepEqual(md.topics[0].partitions.map(p => p.partitionId).sort(), [0, 1, 2])
    for (const p of md.topics[0].partitions) assert.ok(p.leader >= 0, `partition ${p.partitionId} leader ${p.leader}`)

    const describe = async () => configsOf(await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false }), topic)
    let cfg = await describe()
    assert.equal(cfg['retention.ms'].configValue, '3600000')
    assert.equal(cfg['retention.ms'].configSource, DYNAMIC_TOPIC_CONFIG)
    assert.equal(cfg['retention.ms'].isDefault, false)
    assert.equal(cfg['max.message.bytes'].configValue, '200000')
    assert.equal(cfg['cleanup.policy'].configValue, 'delete')
    assert.ok(DEFAULT_SOURCES.has(cfg['cleanup.policy'].configSource), `cleanup.policy source ${cfg['cleanup.policy'].configSource}`)

    // legacy AlterConfigs replaces the whole override set: max.message.bytes reverts to its default
    const altered = await admin.alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [
        { name: 'retention.ms', value: '7200000' },
        { name: 'segment.bytes', value: '10485760' },
      ] }],
    })
    assert.deepEqual(altered.resources.map(x => [x.errorCode, x.resourceName]), [[0, topic]])
    cfg = await describe()
    assert.equal(cfg['retention.ms'].configValue, '7200000')
    assert.equal(cfg['segment.bytes'].configValue, '10485760')
    assert.equal(cfg['segment.bytes'].configSource, DYNAMIC_TOPIC_CONFIG)
    assert.ok(DEFAULT_SOURCES.has(cfg['max.message.bytes'].configSource), `max.message.bytes source ${cfg['max.message.bytes'].configSource}`)
    assert.notEqual(cfg['max.message.bytes'].configValue, '200000')

    await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }], timeout: 30000 })
    await waitUntil(async () => (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0].partitions.length === 5, 30000, '5 partitions')
    const recs = makeRecords('kjs-admin', 100, 5)
    await produceAll(kafka, topic, recs)

    await admin.deleteTopicRecords({ topic, partitions: [{ partition: 4, offset: '7' }] })
    const offs = (await admin.fetchTopicOffsets(topic)).find(o => o.partition === 4)
    assert.deepEqual([Number(offs.low), Number(offs.high)], [7, 20])
    const got = await consume(kafka, topic, { 4: 13 })
    checkStreams({ 4: byPartition(recs, 5)[4].slice(7) }, { 4: got[4] }, { 4: 7 })

    await admin.deleteTopics({ topics: [topic], timeout: 30000 })
    await waitUntil(async () => !(await admin.listTopics()).includes(topic), 30000, `${topic} gone from listTopics`)
  })

  it('idempotent producer', TEST_TIMEOUT, async () => {
    const topic = unique('kjs-idem')
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], timeout: 30000 })
    const recs = makeRecords('kjs-idem')
    const half = recs.length / 2
    const acked = new Map([
      ...(await produceAll(kafka, topic, recs.slice(0, half), { idempotent: true, compression: CompressionTypes.GZIP })),
      ...(await produceAll(kafka, topic, recs.slice(half), { idempotent: true, compression: CompressionTypes.GZIP })),
    ])
    for (const rec of recs) assert.deepEqual(acked.get(rec.i), [rec.partition, Math.floor(rec.i / PARTITIONS)])
    const exp = byPartition(recs)
    const want = Object.fromEntries(Object.entries(exp).map(([p, e]) => [p, e.length]))
    checkStreams(exp, await consume(kafka, topic, want))
  })

  it('consumer group: 3 members share 12 partitions, offsets survive a restart', TEST_TIMEOUT, async () => {
    const topic = unique('kjs-group')
    const groupId = unique('kjs-group')
    const nparts = 12
    const perPart = 250
    await admin.createTopics({ topics: [{ topic, numPartitions: nparts, replicationFactor: 1 }], timeout: 30000 })

    const members = ['c0', 'c1', 'c2']
    const assignment = {} // member -> partitions of its latest join
    const received = {}
    const consumers = []
    let joins = 0
    for (const m of members) {
      received[m] = []
      const c = client(r, m).consumer({ groupId, heartbeatInterval: 500, sessionTimeout: 30000, maxWaitTimeInMs: 200 })
      c.on(c.events.GROUP_JOIN, e => {
        joins++
        assignment[m] = (e.payload.memberAssignment[topic] || []).slice().sort((a, b) => a - b)
      })
      await c.connect()
      await c.subscribe({ topic, fromBeginning: true })
      await c.run({
        autoCommit: true,
        eachMessage: async ({ partition, message }) => {
          received[m].push([partition, Number(message.offset), message.value.toString()])
        },
      })
      consumers.push(c)
    }

    // the coordinator's view: Stable, 3 members, every partition owned by exactly one member
    const groupAssignment = async () => {
      const { groups: [g] } = await admin.describeGroups([groupId])
      const owned = g.members.map(mem => {
        const a = AssignerProtocol.MemberAssignment.decode(mem.memberAssignment)
        return (a && a.assignment[topic]) || []
      })
      return { state: g.state, owned }
    }
    const stable = async () => {
      const { state, owned } = await groupAssignment()
      const all = owned.flat().sort((a, b) => a - b)
      const local = members.map(m => assignment[m] || [])
      return state === 'Stable' && owned.length === 3 && owned.every(o => o.length > 0) &&
        JSON.stringify(all) === JSON.stringify([...Array(nparts).keys()]) &&
        JSON.stringify(local.flat().sort((a, b) => a - b)) === JSON.stringify(all)
    }
    try {
      await waitUntil(stable, DEADLINE_MS, () => `stable 3-way assignment (local ${JSON.stringify(assignment)})`)
      const joinsAtStable = joins

      const producer = kafka.producer({ allowAutoTopicCreation: false })
      await producer.connect()
      const total = nparts * perPart
      for (let k = 0; k < total; k += 1000) {
        const messages = []
        for (let i = k; i < Math.min(total, k + 1000); i++) messages.push({ key: `key-${i}`, value: `group-${i}`, partition: i % nparts })
        await producer.send({ topic, acks: -1, messages })
      }
      await producer.disconnect()

      const seen = () => new Set(members.flatMap(m => received[m].map(x => x[2])))
      await waitUntil(() => seen().size === total, DEADLINE_MS, () => `all records consumed: ${seen().size}/${total}`)
      const committed = async () => {
        const [t] = await admin.fetchOffsets({ groupId, topics: [topic] })
        return t.partitions.every(p => Number(p.offset) === perPart)
      }
      await waitUntil(committed, DEADLINE_MS, 'committed offsets at the end of every partition')

      const all = members.flatMap(m => received[m])
      for (const [p, o, v] of all) assert.equal(v, `group-${o * nparts + p}`, `partition ${p} offset ${o}`)
      const dups = all.length - new Set(all.map(([p, o]) => `${p}:${o}`)).size
      if (joins === joinsAtStable) assert.equal(dups, 0, `${dups} records consumed twice without any rebalance`)
    } finally {
      for (const c of consumers) await c.disconnect()
    }

    // graceful restart; committed offsets survive; a new member resumes from them
    await admin.disconnect()
    admin = null
    await r.restart()
    kafka = client(r)
    admin = kafka.admin()
    await admin.connect()
    const [t] = await admin.fetchOffsets({ groupId, topics: [topic] })
    assert.deepEqual(t.partitions.map(p => [p.partition, Number(p.offset)]).sort((a, b) => a[0] - b[0]),
      [...Array(nparts).keys()].map(p => [p, perPart]))

    const extra = 5
    const producer = kafka.producer({ allowAutoTopicCreation: false })
    await producer.connect()
    await producer.send({ topic, acks: -1, messages: [...Array(nparts * extra).keys()].map(i => ({ key: 'after', value: `after-${i}`, partition: i % nparts })) })
    await producer.disconnect()
    const c = kafka.consumer({ groupId, heartbeatInterval: 500, maxWaitTimeInMs: 200 })
    const got = {}
    for (let p = 0; p < nparts; p++) got[p] = []
    await c.connect()
    try {
      await c.subscribe({ topic, fromBeginning: true })
      await c.run({ autoCommit: false, eachMessage: async ({ partition, message }) => { got[partition].push([Number(message.offset), message.value.toString()]) } })
      await waitUntil(() => Object.values(got).every(l => l.length >= extra), DEADLINE_MS,
        () => `resumed consumer: ${JSON.stringify(Object.values(got).map(l => l.length))}`)
    } finally {
      await c.disconnect()
    }
    for (const [p, l] of Object.entries(got)) {
      assert.deepEqual(l.map(x => x[0]), [perPart, perPart + 1, perPart + 2, perPart + 3, perPart + 4], `partition ${p} resumed at ${JSON.stringify(l.slice(0, 3))}`)
      assert.ok(l.every(x => x[1].startsWith('after-')))
    }
  })
})
