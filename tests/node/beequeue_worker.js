'use strict';
// A real bee-queue worker whose handler is wrapped by queuestorm's Node hook. Runs until the ledger counts
// `until` completions of run `run` (when given), else until killed. `stall` (ms) is bee-queue's stallInterval; the
// worker checks for stalled jobs every stall/2 ms, as bee-queue's README recommends.
const Queue = require('bee-queue');
const { counted, closeLedgers } = require('queuestorm-hook');
const { args, completionsReach } = require('./common');

const a = args({ concurrency: '10', stall: '5000' });
const queue = new Queue(a.queue, {
  redis: { url: a.url }, getEvents: false, sendEvents: true, stallInterval: Number(a.stall),
});
queue.on('error', (err) => console.error('bee-queue error:', err.message));
queue.process(Number(a.concurrency), counted({ ledgerUrl: a.url }));
queue.checkStalledJobs(Math.max(1, Math.floor(Number(a.stall) / 2)));
queue.ready().then(() => console.log('ready'));

if (a.until) {
  completionsReach(a.url, a.run, Number(a.until)).then(async () => {
    await queue.close(5000);
    await closeLedgers();
    process.exit(0);
  });
}
