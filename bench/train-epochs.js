#!/usr/bin/env node
// Whole training epochs on SST train (d = 25, batch 27, AdaGrad included,
// no dev evaluation) at 1 and 2 threads: sentences/s, effective GFLOP/s
// (DESIGN.md's nominal work, as in bench/forward-backward.js) and the
// large-matrix sgemm rate measured in the same process. Medians over epochs,
// the first epoch (warm-up) excluded.
//
//   node bench/train-epochs.js [--threads 1,2] [--shards 4] [--epochs 4] [--dim 25]
'use strict';
const path = require('node:path');
const fs = require('node:fs');
const { parseArgs } = require('node:util');
const lib = path.resolve(__dirname, '../lib');
const { train, DEFAULT_TRAIN_OPTIONS } = require(`${lib}/train`);
const { describeBlas, native } = require(`${lib}/native`);
const { readTrees, countNodes } = require(`${lib}/tree`);

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '1,2' },
    shards: { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.shards) },
    epochs: { type: 'string', default: '4' },
    dim: { type: 'string', default: '25' },
    train: { type: 'string', default: path.resolve(__dirname, '../../shared/data/sst/train.txt') },
  },
});
if (!fs.existsSync(values.train)) {
  console.log(`skipped: ${values.train} is absent (the benchmark needs the Stanford Sentiment Treebank)`);
  process.exit(0);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const trees = readTrees(values.train);
let internal = 0;
for (const t of trees) internal += countNodes(t).internal;
const d = Number(values.dim);
const flopsPerEpoch = 2 * (3 * (2 * d * d + d) * 2 * d * internal);

(async () => {
  console.log(describeBlas());
  console.log(`${trees.length} trees, d=${d}, batch ${DEFAULT_TRAIN_OPTIONS.batchSize}, ${values.epochs} epochs per run (first excluded), medians`);
  const rows = [];
  for (const shards of values.shards.split(',').map(Number)) {
    for (const threads of values.threads.split(',').map(Number)) {
      const peak = native().sgemmRate(1024, 5);
      const result = await train(trees, undefined, { ...DEFAULT_TRAIN_OPTIONS, dim: d, epochs: Number(values.epochs), threads, shards });
      const rate = median(result.records.slice(1).map((r) => r.sentencesPerSecond));
      const gflops = (flopsPerEpoch * rate) / trees.length / 1e9;
      rows.push({ shards, threads, rate });
      console.log(
        `shards=${shards} threads=${threads}: ${rate.toFixed(0)} sentences/s, ${gflops.toFixed(1)} effective GFLOP/s, ` +
          `sgemm 1024³ ${peak.toFixed(1)} GFLOP/s (one thread), ratio ${(gflops / peak).toFixed(3)}`,
      );
    }
    const one = rows.find((r) => r.shards === shards && r.threads === 1);
    for (const r of rows.filter((r) => r.shards === shards && r.threads > 1 && one)) {
      console.log(`shards=${shards}: ${r.threads} threads are ${(r.rate / one.rate).toFixed(2)}× one thread`);
    }
  }
})();
