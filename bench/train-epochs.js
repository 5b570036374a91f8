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
const { parseArgs } = require('node:util');
const { lib, SST_DIR, requireTreebank, nominalFlops, median } = require('./common');
const { train, DEFAULT_TRAIN_OPTIONS } = lib('train');
const { describeBlas, native } = lib('native');
const { readTrees, countNodes } = lib('tree');

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '1,2' },
    shards: { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.shards) },
    epochs: { type: 'string', default: '4' },
    dim: { type: 'string', default: '25' },
    train: { type: 'string', default: path.join(SST_DIR, 'train.txt') },
  },
});
requireTreebank(values.train);
const trees = readTrees(values.train);
let internal = 0;
for (const t of trees) internal += countNodes(t).internal;
const d = Number(values.dim);
const flopsPerEpoch = nominalFlops(d, internal);

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
