// Reads a topic from the beginning with kafkajs (a Kafka client that shares no code with librdkafka) and
// checks what sluice's Kafka sink wrote: every (device, seq) present, per-key order, duplicates counted,
// and the headers of the first message. Prints one JSON line; exits 0 when the check passed.
//
//   node verify.js BROKERS TOPIC DEVICES PER_DEVICE [--dups-ok] [--timeout-ms N] [--expect-total N]
//
// --expect-total N: N distinct events are expected (a run stopped mid-round has devices with one event
// fewer); the default is DEVICES * PER_DEVICE.
//
// Keys are device ids "dev-NNNNNNN"; payloads carry "seq":N (the generator's). Stops as soon as every
// expected event was seen (then waits for nothing else), or at the timeout.
'use strict';
const { Kafka, logLevel, CompressionTypes, CompressionCodecs } = require('kafkajs');

// Codecs kafkajs lacks: snappy (kafkajs-snappy over snappyjs), lz4 (kafkajs-lz4 over the lz4 package,
// whose install builds a small xxhash addon with node-gyp: npm ci needs make and a C++ compiler), zstd (a
// decoder over fzstd; we only read).
// Each codec counts the batches it decompressed (reported as "decompressed"), so a test can tell that the
// data really was compressed.
const decompressed = {};
function counted(name, codecFn) {
  return () => {
    const c = codecFn();
    return {
      compress: (e) => c.compress(e),
      decompress: async (b) => { decompressed[name] = (decompressed[name] || 0) + 1; return c.decompress(b); },
    };
  };
}
CompressionCodecs[CompressionTypes.GZIP] = counted('gzip', CompressionCodecs[CompressionTypes.GZIP]);
CompressionCodecs[CompressionTypes.Snappy] = counted('snappy', require('kafkajs-snappy'));
const LZ4 = require('kafkajs-lz4');
CompressionCodecs[CompressionTypes.LZ4] = counted('lz4', new LZ4().codec);
const fzstd = require('fzstd');
CompressionCodecs[CompressionTypes.ZSTD] = counted('zstd', () => ({
  async compress() { throw new Error('verify.js only reads'); },
  async decompress(buffer) { return Buffer.from(fzstd.decompress(buffer)); },
}));

const [brokers, topic, devicesArg, perArg, ...rest] = process.argv.slice(2);
const devices = Number(devicesArg), perDevice = Number(perArg);
const dupsOk = rest.includes('--dups-ok');
const ti = rest.indexOf('--timeout-ms');
const timeoutMs = ti >= 0 ? Number(rest[ti + 1]) : 60000;
const ei = rest.indexOf('--expect-total');
const expectTotal = ei >= 0 ? Number(rest[ei + 1]) : devices * perDevice;

const seen = new Uint8Array(devices * perDevice);
const next = new Map(); // key -> expected next seq (order check)
let messages = 0, distinct = 0, dups = 0, outOfOrder = 0, bad = 0, firstHeaders = null;

function report(done) {
  const missing = expectTotal - distinct;
  const ok = missing === 0 && bad === 0 && outOfOrder === 0 && (dupsOk || dups === 0);
  console.log(JSON.stringify({ ok, messages, distinct, missing, dups, outOfOrder, bad, decompressed, firstHeaders, done }));
  return ok;
}

async function main() {
  const kafka = new Kafka({ clientId: 'sluice-verify', brokers: brokers.split(','), logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId: 'sluice-verify-' + process.pid, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let finish;
  const finished = new Promise((r) => (finish = r));
  const timer = setTimeout(() => finish(false), timeoutMs);
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ message }) => {
      messages++;
      const key = message.key ? message.key.toString() : '';
      const m = /"seq":(\d+)/.exec(message.value.toString());
      const d = Number(key.slice(4));
      if (!key.startsWith('dev-') || !m || !(d < devices) || !(Number(m[1]) < perDevice)) { bad++; return; }
      const seq = Number(m[1]);
      if (firstHeaders === null) {
        firstHeaders = {};
        for (const [k, v] of Object.entries(message.headers || {})) firstHeaders[k] = v.toString();
      }
      const want = next.get(key) || 0;
      // A redelivery replays a suffix of a device's stream: seq below the expected one is a duplicate; a
      // seq above it is a gap (the order check) unless it is filled later.
      if (seq < want) dups++;
      else if (seq > want) outOfOrder++;
      if (seq >= want) next.set(key, seq + 1);
      const i = d * perDevice + seq;
      if (!seen[i]) { seen[i] = 1; distinct++; }
      if (distinct === expectTotal) finish(true);
    },
  });
  const done = await finished;
  clearTimeout(timer);
  await consumer.disconnect();
  process.exit(report(done) ? 0 : 1);
}

main().catch((e) => { console.log(JSON.stringify({ ok: false, error: String(e) })); process.exit(2); });
