'use strict';
// Wrap a BullMQ or bee-queue processor so that each queuestorm-marked job (job.data is queuestorm's marker) is
// recorded in queuestorm's ledger after the processor returns and before the library acknowledges the job:
//
//   const { counted } = require('queuestorm-hook');
//   new Worker('my-queue', counted(processor), { connection });           // BullMQ
//   queue.process(concurrency, counted(handler));                          // bee-queue
//
// The ledger is $QS_LEDGER_URL, else options.ledgerUrl, else options.redis (an ioredis client). Without a
// processor, the job is queuestorm's own: it sleeps $QS_WORK_MS milliseconds.

const Redis = require('ioredis');
const { markerOf, recordCompletion } = require('./ledger');

const RETRIES = 3;
const RETRY_PAUSE_MS = 200;
const clients = new Map();

// No resending by ioredis itself: a resent BITFIELD that had landed would read its own bit as a duplicate.
function ledgerClient(url) {
  let client = clients.get(url);
  if (!client) {
    client = new Redis(url, { autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0, enableOfflineQueue: true });
    client.on('error', () => {}); // each failed record raises on its own
    clients.set(url, client);
  }
  return client;
}

function redactUrl(url) {
  return String(url).replace(/\/\/([^/@]*)@/, (_, user) => `//${user.includes(':') ? user.split(':')[0] + ':***' : '***'}@`);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function simulateWork() {
  const ms = Number(process.env.QS_WORK_MS || 0);
  if (ms > 0) await sleep(ms);
}

async function recordWithRetries(redis, marker, where) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await recordCompletion(redis, marker, { retry: attempt > 0 });
    } catch (err) {
      if (attempt >= RETRIES) {
        throw new Error(`queuestorm hook: ledger Redis at ${where}: ${err.name}: ${String(err.message).split('\n')[0]}`);
      }
      await sleep(RETRY_PAUSE_MS);
    }
  }
}

function ledgerOf(options) {
  const url = process.env.QS_LEDGER_URL || options.ledgerUrl;
  if (url) return { redis: ledgerClient(url), where: redactUrl(url) };
  if (options.redis) return { redis: options.redis, where: 'the given ioredis client' };
  throw new Error('queuestorm hook: set QS_LEDGER_URL to the ledger\'s Redis URL');
}

function counted(processor, options = {}) {
  if (processor && typeof processor === 'object') {
    options = processor;
    processor = null;
  }
  return async function countedProcessor(job, ...rest) {
    const result = processor ? await processor(job, ...rest) : await simulateWork();
    const marker = markerOf(job && job.data);
    if (marker) {
      const { redis, where } = ledgerOf(options);
      await recordWithRetries(redis, marker, where);
    }
    return result;
  };
}

async function closeLedgers() {
  await Promise.all([...clients.values()].map((client) => client.quit().catch(() => client.disconnect())));
  clients.clear();
}

module.exports = { counted, closeLedgers, markerOf };
