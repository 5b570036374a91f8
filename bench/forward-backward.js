#!/usr/bin/env node
// Forward+backward throughput over SST train, single thread, at d = 25 and 35.
//
// Prints sentences/s, the effective GFLOP/s of the model's math (DESIGN.md's
// count of its work over the time taken), the
// large-matrix sgemm GFLOP/s measured in the same process, and their ratio:
// on a shared, noisy machine the ratio is the figure to compare, not the time.
// Each figure is the median of several whole passes over the treebank.
//
//   node bench/forward-backward.js [--passes 5] [--batch 27] [--dims 25,35]
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');
const { lib, SST_DIR, readTreebank, nominalFlops, median, numberFlag, numberList } = require('./common');
const { compileBatch } = lib('batch');
const { Model } = lib('model');
const { createWorkspace, describeBlas, native, nativeDims } = lib('native');
const { Vocabulary } = lib('vocab');

const { values } = parseArgs({
  options: {
    passes: { type: 'string', default: '5' },
    batch: { type: 'string', default: '27' },
    dims: { type: 'string', default: '25,35' },
    train: { type: 'string', default: path.join(SST_DIR, 'train.txt') },
  },
});
const passes = numberFlag('passes', values.passes, { integer: true, min: 1 });
const batchSize = numberFlag('batch', values.batch, { integer: true, min: 1 });
const dimensions = numberList('dims', values.dims, { integer: true, min: 1 });

const { trees, internal } = readTreebank(values.train);
const vocab = Vocabulary.fromTrees(trees);
// Batches are compiled once, as a trainer that reuses its schedules would;
// compileBatch's own cost is measured separately below.
const t0 = process.hrtime.bigint();
const batches = [];
for (let i = 0; i < trees.length; i += batchSize) batches.push(compileBatch(trees.slice(i, i + batchSize), vocab));
const compileSeconds = Number(process.hrtime.bigint() - t0) / 1e9;

console.log(describeBlas());
console.log(`${trees.length} trees, ${internal} internal nodes, batch ${batchSize}, ${passes} passes per figure, median reported`);
console.log(`compileBatch over all of train: ${compileSeconds.toFixed(3)} s`);
for (const dim of dimensions) {
  const model = Model.create(vocab, { dim, seed: 1 });
  const dims = nativeDims(model);
  const grad = new Float32Array(model.params.length);
  const ws = createWorkspace();
  const flopsPerPass = nominalFlops(dim, internal);
  const rates = [];
  const sgemm = [];
  for (let p = 0; p < passes + 1; p++) {
    sgemm.push(native().sgemmRate(1024, 3));
    const start = process.hrtime.bigint();
    for (const b of batches) ws.forwardBackward(model.params, grad, dims, b);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    if (p > 0) rates.push(seconds); // the first pass warms caches and the workspace
  }
  const sec = median(rates);
  const gflops = flopsPerPass / sec / 1e9;
  const peak = median(sgemm);
  console.log(
    `d=${dim}: ${(trees.length / sec).toFixed(0)} sentences/s, ${gflops.toFixed(1)} effective GFLOP/s, ` +
      `sgemm 1024³ ${peak.toFixed(1)} GFLOP/s, ratio ${(gflops / peak).toFixed(3)} (pass ${sec.toFixed(3)} s)`,
  );
}
