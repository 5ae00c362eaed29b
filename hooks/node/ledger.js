'use strict';
// queuestorm's ledger, written as docs/ledger.md specifies: marker fields, key names, the completed bitmap (Redis
// bit order, one BITFIELD SET u1), the duplicate hash, the e2e histogram and the completions counter.

const RUN_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const BUCKETS_PER_E = 50;

// The marker's fields, from a job's data: the marker object itself or the marker as a JSON string.
function markerOf(data) {
  if (typeof data === 'string') {
    if (!data.startsWith('{"qs":')) return null;
    try {
      data = JSON.parse(data);
    } catch (err) {
      return null;
    }
  }
  if (!data || typeof data !== 'object' || !('qs' in data)) return null;
  const { run, producer, seq } = data;
  const enqueuedAt = Number(data.enqueued_at);
  if (typeof run !== 'string' || !RUN_ID.test(run)) return null;
  if (!Number.isSafeInteger(producer) || producer < 1 || !Number.isSafeInteger(seq) || seq < 0) return null;
  if (!Number.isFinite(enqueuedAt)) return null;
  return { run, producer, seq, enqueuedAt };
}

// Python's round(): halves go to the even neighbour.
function roundHalfEven(x) {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

function bucketOf(ms) {
  return roundHalfEven(Math.log(Math.max(ms, 0.001)) * BUCKETS_PER_E);
}

function nowSeconds() {
  return (performance.timeOrigin + performance.now()) / 1000;
}

function runKeys(run) {
  const base = `queuestorm:{${run}}:`;
  return {
    completions: base + 'completions',
    e2e: base + 'e2e',
    completed: (producer) => `${base}p:${producer}:done`,
    duplicates: (producer) => `${base}p:${producer}:dup`,
  };
}

// One completion: the bit set (its old value read back), the latency bucket and the counter in one round trip; the
// duplicate counted after, unless `retry` (an earlier attempt may have set the bit itself).
async function recordCompletion(redis, marker, { retry = false, now = nowSeconds() } = {}) {
  const keys = runKeys(marker.run);
  const e2eMs = (now - marker.enqueuedAt) * 1000;
  const replies = await redis
    .pipeline()
    .bitfield(keys.completed(marker.producer), 'SET', 'u1', marker.seq, 1)
    .hincrby(keys.e2e, String(bucketOf(e2eMs)), 1)
    .incrby(keys.completions, 1)
    .exec();
  for (const [err] of replies) if (err) throw err;
  const oldBit = replies[0][1][0];
  if (oldBit === 1 && !retry) {
    await redis.hincrby(keys.duplicates(marker.producer), String(marker.seq), 1);
    return true;
  }
  return false;
}

module.exports = { markerOf, bucketOf, roundHalfEven, recordCompletion, runKeys, nowSeconds };
