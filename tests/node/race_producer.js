'use strict';
// Seed 004 (bee-queue #189) as its client does: `chains` recurrent job chains, each saving its next job when the
// Queue reports the last one succeeded ('job succeeded', reliable), while counting the job's own 'succeeded' events
// (the ones the race loses). Every save is recorded in queuestorm's ledger as docs/ledger.md says. A stats line
// every `stats` ms, then a final one with the process's memory growth and the jobs still in the Queue's job map.
const Queue = require('bee-queue');
const Redis = require('ioredis');
const { args } = require('./common');

const a = args({ chains: '50', duration: '10000', stats: '3000', payload: '' });
const producerKey = `queuestorm:{${a.run}}:p:${a.producer}`;
const ledger = new Redis(a.url);
const queue = new Queue(a.queue, { redis: { url: a.url }, isWorker: false, getEvents: true });
const counts = { numJobSaveSuccess: 0, numJobSaveError: 0, numQueueSucceeded: 0, numQueueFailed: 0, numJobSucceeded: 0 };
const started = Date.now();
const memoryAtStart = process.memoryUsage();
let seq = 0;
let stopping = false;

function stats(final) {
  const elapsed = (Date.now() - started) / 1000;
  const lost = counts.numQueueSucceeded - counts.numJobSucceeded;
  const line = {
    ...counts, throughput: ((counts.numQueueSucceeded + counts.numQueueFailed) / elapsed).toFixed(0),
    numSucceededLost: lost,
    succededLossPercent: counts.numQueueSucceeded ? ((100 * lost) / counts.numQueueSucceeded).toFixed(1) : '0.0',
    elapsed_s: Number(elapsed.toFixed(1)),
  };
  if (final) {
    const memory = process.memoryUsage();
    Object.assign(line, {
      final: true, issued: seq, jobsMapSize: queue.jobs.size,
      rssStartBytes: memoryAtStart.rss, rssEndBytes: memory.rss,
      heapUsedStartBytes: memoryAtStart.heapUsed, heapUsedEndBytes: memory.heapUsed,
    });
  }
  console.log(JSON.stringify(line));
}

async function saveNext() {
  if (stopping) return;
  const mine = seq++;
  const marker = { qs: 1, run: a.run, producer: Number(a.producer), seq: mine, enqueued_at: Date.now() / 1000, payload: a.payload };
  const job = queue.createJob(marker);
  job.on('succeeded', () => { counts.numJobSucceeded += 1; });
  try {
    await job.save();
    counts.numJobSaveSuccess += 1;
    await ledger.setbit(`${producerKey}:enq`, mine, 1);
  } catch (err) {
    counts.numJobSaveError += 1;
    await ledger.setbit(`${producerKey}:maybe`, mine, 1);
    setImmediate(saveNext);
  }
}

queue.on('job succeeded', () => {
  counts.numQueueSucceeded += 1;
  saveNext();
});
queue.on('job failed', () => {
  counts.numQueueFailed += 1;
  saveNext();
});

async function main() {
  await queue.ready();
  const timer = setInterval(() => stats(false), Number(a.stats));
  for (let i = 0; i < Number(a.chains); i++) saveNext();
  await new Promise((resolve) => setTimeout(resolve, Number(a.duration)));
  stopping = true;
  const deadline = Date.now() + 10000;
  while (counts.numQueueSucceeded + counts.numQueueFailed < counts.numJobSaveSuccess && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  clearInterval(timer);
  await ledger.hset(producerKey, 'issued', seq);
  stats(true);
  await queue.close();
  ledger.disconnect();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
