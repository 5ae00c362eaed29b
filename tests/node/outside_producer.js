'use strict';
// A producer written from docs/ledger.md alone: bee-queue's own Queue enqueues, ioredis records each outcome in the
// ledger (enq / maybe bits, issued), queuestorm drains and checks. The producer id comes from
// `queuestorm run producer`; closing is left to `queuestorm run close`.
const Queue = require('bee-queue');
const Redis = require('ioredis');
const { args } = require('./common');

const a = args({ count: '100' });
const prefix = `queuestorm:{${a.run}}:p:${a.producer}`;
const ledger = new Redis(a.url);
const queue = new Queue(a.queue, { redis: { url: a.url }, isWorker: false, getEvents: false });

async function main() {
  const count = Number(a.count);
  for (let seq = 0; seq < count; seq++) {
    const marker = { qs: 1, run: a.run, producer: Number(a.producer), seq, enqueued_at: Date.now() / 1000, payload: '' };
    try {
      await queue.createJob(marker).save();
      await ledger.setbit(`${prefix}:enq`, seq, 1);
    } catch (err) {
      await ledger.setbit(`${prefix}:maybe`, seq, 1);
    }
    if (seq % 50 === 49) await ledger.hset(prefix, 'issued', seq + 1);
  }
  await ledger.hset(prefix, 'issued', count);
  console.log(JSON.stringify({ issued: count }));
  await queue.close();
  ledger.disconnect();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
