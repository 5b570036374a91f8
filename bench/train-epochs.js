#!/usr/bin/env node
// Whole training epochs on SST train (d = 25, batch 27, AdaGrad included,
// no dev evaluation) at 1 and 2 threads: sentences/s, effective GFLOP/s
// (DESIGN.md's nominal work, as in bench/forward-backward.js) and the
// large-matrix sgemm rate measured in the same process.
//
// The machine is shared and its speed drifts by 2× within minutes, so the
// thread counts are measured in alternation, round after round: each round
// trains every configuration for `--epochs` epochs (the first, warm-up,
// excluded) right after one another, and the speed-up is the median of the
// per-round ratios, not a ratio of medians taken at different times.
//
//   node bench/train-epochs.js [--threads 1,2] [--shards 4] [--epochs 3] [--rounds 3] [--dim 25]
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');
const { lib, SST_DIR, readTreebank, nominalFlops, median } = require('./common');
const { train, DEFAULT_TRAIN_OPTIONS } = lib('train');
const { describeBlas, native } = lib('native');

const { values } = parseArgs({
  options: {
    threads: { type: 'string', default: '1,2' },
    shards: { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.shards) },
    epochs: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    dim: { type: 'string', default: '25' },
    train: { type: 'string', default: path.join(SST_DIR, 'train.txt') },
  },
});
const { trees, internal } = readTreebank(values.train);
const d = Number(values.dim);
const flopsPerEpoch = nominalFlops(d, internal);
const gflops = (rate) => (flopsPerEpoch * rate) / trees.length / 1e9;
const list = (s) => s.split(',').map(Number);

(async () => {
  console.log(describeBlas());
  console.log(
    `${trees.length} trees, d=${d}, batch ${DEFAULT_TRAIN_OPTIONS.batchSize}; ${values.rounds} rounds of ` +
      `${values.epochs} epochs per configuration (first excluded), configurations alternating`,
  );
  const configs = list(values.shards).flatMap((shards) => list(values.threads).map((threads) => ({ shards, threads, rates: [], sgemm: [] })));
  for (let round = 1; round <= Number(values.rounds); round++) {
    for (const c of configs) {
      c.sgemm.push(native().sgemmRate(1024, 5));
      const result = await train(trees, undefined, { ...DEFAULT_TRAIN_OPTIONS, dim: d, epochs: Number(values.epochs), threads: c.threads, shards: c.shards });
      c.rates.push(median(result.records.slice(1).map((r) => r.sentencesPerSecond)));
    }
    console.log(`round ${round}: ${configs.map((c) => `shards=${c.shards} threads=${c.threads} ${c.rates[round - 1].toFixed(0)}`).join(', ')} sentences/s`);
  }
  console.log('\n| shards | threads | sentences/s | effective GFLOP/s | sgemm 1024³ (1 thread) | ratio | speed-up over 1 thread |');
  console.log('|---|---|---|---|---|---|---|');
  for (const c of configs) {
    const rate = median(c.rates);
    const peak = median(c.sgemm);
    const one = configs.find((o) => o.shards === c.shards && o.threads === 1);
    const speedup = one && c !== one ? `${median(c.rates.map((r, i) => r / one.rates[i])).toFixed(2)}× (per round: ${c.rates.map((r, i) => (r / one.rates[i]).toFixed(2)).join(', ')})` : '';
    console.log(`| ${c.shards} | ${c.threads} | ${rate.toFixed(0)} | ${gflops(rate).toFixed(1)} | ${peak.toFixed(1)} | ${(gflops(rate) / peak).toFixed(3)} | ${speedup} |`);
  }
})();
