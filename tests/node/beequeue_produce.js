'use strict';
// bee-queue's own Queue saves `count` jobs whose data is queuestorm's marker (run, producer, seq 0..count-1),
// with retries and a timeout as a user would set them; prints {"saved": n} once every save resolved.
const Queue = require('bee-queue');
const { args } = require('./common');

const a = args({ count: '100', payload: '' });
const queue = new Queue(a.queue, { redis: { url: a.url }, isWorker: false, getEvents: false });

async function main() {
  let saved = 0;
  for (let seq = 0; seq < Number(a.count); seq++) {
    const marker = { qs: 1, run: a.run, producer: Number(a.producer), seq, enqueued_at: Date.now() / 1000, payload: a.payload };
    await queue.createJob(marker).retries(2).timeout(30000).save();
    saved += 1;
  }
  console.log(JSON.stringify({ saved }));
  await queue.close();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
