#!/usr/bin/env node
// Two builds of the addon, side by side in one process: what one training
// thread does per minibatch of SST train (batch 27 split into the trainer's
// 4 shards, forward+backward into their gradients, then the AdaGrad step),
// the builds' passes interleaved, so that the machine's drift hits both alike.
// Prints each build's median rate and the median of the per-pass ratios B/A
// for the whole step and for its two parts: the figure for "is this native
// change faster?" on a shared machine. Each build trains its own copy of the
// parameters, so both see the same kind of values.
//
//   node bench/compare-addons.js A.node B.node [--passes 9]
//   (e.g. A = a copy of build/Release/rntn.node kept before the change,
//    B = build/Release/rntn.node after `npm run build:native`)
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');
const { lib, SST_DIR, readTreebank, median, numberFlag } = require('./common');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { passes: { type: 'string', default: '9' }, train: { type: 'string', default: path.join(SST_DIR, 'train.txt') } },
});
if (positionals.length !== 2) {
  console.error('usage: node bench/compare-addons.js A.node B.node [--passes 9]');
  process.exit(2);
}
const passes = numberFlag('passes', values.passes, { integer: true, min: 1 });
// The environment rntn's loader would set (src/native.ts), before either addon loads OpenBLAS.
lib('native').native();
const [A, B] = positionals.map((file) => require(path.resolve(file)));
const { compileBatch, distinctSorted } = lib('batch');
const { Model } = lib('model');
const { nativeDims } = lib('native');
const { denseShares, updateShare } = lib('pool');
const { DEFAULT_TRAIN_OPTIONS, splitIntoShards, updateConfig } = lib('train');
const { Vocabulary } = lib('vocab');

const { trees, sizes } = readTreebank(values.train);
const options = DEFAULT_TRAIN_OPTIONS;
const vocab = Vocabulary.fromTrees(trees, options.minCount);
const model = Model.create(vocab, { dim: 25, seed: 1 });
const dims = nativeDims(model);
// The trainer's update: which ranges a batch updates, with which λ (each build keeps its own history below).
const update = updateConfig(model, options.lambda, { history: new Float32Array(0), epsilon: options.adagradEpsilon });
// One thread updates everything. The pool steps V and W from the shards'
// packed gradients (src/worker.ts); here each shard's buffer holds its own
// dV and dW, so V and W are stepped from the buffers like the rest.
const [whole] = denseShares(update, dims, 1);
const everything = { ...whole, unpackedTo: whole.from };
const batches = [];
for (let i = 0; i < trees.length; i += options.batchSize) {
  const members = Int32Array.from({ length: Math.min(options.batchSize, trees.length - i) }, (_, k) => i + k);
  const shards = splitIntoShards(members, options.shards, (t) => sizes[t]).map((shard) => compileBatch(Array.from(shard, (t) => trees[t]), vocab));
  const touched = distinctSorted(shards.flatMap((shard) => Array.from(shard.words)));
  batches.push({ shards, scale: 1 / members.length, ...updateShare(update, everything, touched, 0, 1) });
}
const state = (addon) => ({
  workspace: new addon.Workspace(),
  params: Float32Array.from(model.params),
  history: new Float32Array(model.params.length),
  grads: batches[0].shards.map(() => new Float32Array(model.params.length)),
});
const pass = (addon, s) => {
  let forwardBackward = 0n;
  let step = 0n;
  for (const b of batches) {
    const t0 = process.hrtime.bigint();
    s.workspace.forwardBackwardShards(s.params, s.grads, dims, b.shards);
    const t1 = process.hrtime.bigint();
    addon.adagradStep(s.params, s.history, s.grads, b.ranges, b.lambdas, b.scale, options.learningRate, options.adagradEpsilon);
    forwardBackward += t1 - t0;
    step += process.hrtime.bigint() - t1;
  }
  return { forwardBackward: Number(forwardBackward) / 1e9, update: Number(step) / 1e9 };
};
const states = [state(A), state(B)];
const a = [];
const b = [];
// The order alternates from pass to pass (AB, BA, …): with A always first,
// one addon against a copy of itself measured B/A 1.22 over 2 passes and
// 1.06 over 6 (session 7), a bias as big as the changes it is meant to see.
for (let p = 0; p < passes; p++) {
  if (p % 2 === 0) {
    a.push(pass(A, states[0]));
    b.push(pass(B, states[1]));
  } else {
    b.push(pass(B, states[1]));
    a.push(pass(A, states[0]));
  }
}
const total = (r) => r.forwardBackward + r.update;
const report = (name, time) => {
  const ratios = a.map((r, i) => time(r) / time(b[i]));
  return `${name}: B/A ${median(ratios).toFixed(3)} (per pass: ${ratios.map((r) => r.toFixed(2)).join(' ')})`;
};
const share = (runs) => `${((100 * median(runs.map((r) => r.update))) / median(runs.map(total))).toFixed(1)} %`;
console.log(
  `A ${(trees.length / median(a.map(total))).toFixed(0)} sentences/s (AdaGrad step ${share(a)} of it), ` +
    `B ${(trees.length / median(b.map(total))).toFixed(0)} sentences/s (${share(b)})`,
);
console.log(report('whole step', total));
console.log(report('forward+backward', (r) => r.forwardBackward));
console.log(report('AdaGrad step', (r) => r.update));
