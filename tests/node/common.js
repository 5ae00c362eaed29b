'use strict';
// What the test scripts share: arguments as key=value, and stopping once the ledger counts enough completions.

const Redis = require('ioredis');

function args(defaults) {
  const out = { ...defaults };
  for (const arg of process.argv.slice(2)) {
    const at = arg.indexOf('=');
    out[arg.slice(0, at)] = arg.slice(at + 1);
  }
  return out;
}

// Resolves once `queuestorm:{run}:completions` reaches `count` (polled every 50 ms).
async function completionsReach(url, run, count) {
  const redis = new Redis(url);
  try {
    while (Number((await redis.get(`queuestorm:{${run}}:completions`)) || 0) < count) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    redis.disconnect();
  }
}

module.exports = { args, completionsReach };
