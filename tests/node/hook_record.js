'use strict';
// Records one completion of `marker` (JSON) through queuestorm's Node hook, `times` times; `retry=1` marks every
// attempt after the first as a retry of the same write. Prints the buckets of `ms` (comma-separated) when given.
const Redis = require('ioredis');
const { markerOf, bucketOf, recordCompletion } = require('queuestorm-hook/ledger');
const { args } = require('./common');

const a = args({ times: '1', retry: '0' });

async function main() {
  if (a.ms) {
    console.log(JSON.stringify(a.ms.split(',').map((ms) => bucketOf(Number(ms)))));
    return;
  }
  const redis = new Redis(a.url);
  const marker = markerOf(a.marker);
  for (let i = 0; i < Number(a.times); i++) {
    await recordCompletion(redis, marker, { retry: a.retry === '1' && i > 0 });
  }
  redis.disconnect();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
