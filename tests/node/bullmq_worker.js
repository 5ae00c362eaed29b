'use strict';
// A real BullMQ Worker whose processor is wrapped by queuestorm's Node hook. Runs until the ledger counts `until`
// completions of run `run` (when given), else until killed. `lock` (ms) is the lock duration and stalled interval.
const { Worker } = require('bullmq');
const { counted, closeLedgers } = require('queuestorm-hook');
const { args, completionsReach } = require('./common');

const a = args({ concurrency: '10', lock: '30000' });
const url = new URL(a.url);
const connection = { host: url.hostname, port: Number(url.port), db: Number(url.pathname.slice(1) || 0) };
const worker = new Worker(a.queue, counted({ ledgerUrl: a.url }), {
  connection, concurrency: Number(a.concurrency), lockDuration: Number(a.lock), stalledInterval: Number(a.lock),
});
worker.on('error', (err) => console.error('bullmq error:', err.message));
worker.waitUntilReady().then(() => console.log('ready'));

if (a.until) {
  completionsReach(a.url, a.run, Number(a.until)).then(async () => {
    await worker.close();
    await closeLedgers();
    process.exit(0);
  });
}
