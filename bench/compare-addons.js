#!/usr/bin/env node
// Two builds of the addon, side by side in one process: forward+backward over
// SST train (batch 27, one thread), the builds' passes interleaved, so that
// the machine's drift hits both alike. Prints each build's median rate and the
// median of the per-pass ratios B/A: the figure for "is this native change
// faster?" on a shared machine.
//
//   node bench/compare-addons.js A.node B.node [--passes 9]
//   (e.g. A = a copy of build/Release/rntn.node kept before the change,
//    B = build/Release/rntn.node after `npm run build:native`)
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');
const { lib, SST_DIR, readTreebank, median } = require('./common');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { passes: { type: 'string', default: '9' }, train: { type: 'string', default: path.join(SST_DIR, 'train.txt') } },
});
if (positionals.length !== 2) {
  console.error('usage: node bench/compare-addons.js A.node B.node [--passes 9]');
  process.exit(2);
}
// The environment rntn's loader would set (src/native.ts), before either addon loads OpenBLAS.
lib('native').native();
const [A, B] = positionals.map((file) => require(path.resolve(file)));
const { compileBatch } = lib('batch');
const { Model } = lib('model');
const { nativeDims } = lib('native');
const { Vocabulary } = lib('vocab');

const { trees } = readTreebank(values.train);
const vocab = Vocabulary.fromTrees(trees);
const batches = [];
for (let i = 0; i < trees.length; i += 27) batches.push(compileBatch(trees.slice(i, i + 27), vocab));
const model = Model.create(vocab, { dim: 25, seed: 1 });
const dims = nativeDims(model);
const pass = (addon) => {
  const ws = new addon.Workspace();
  const grad = new Float32Array(model.params.length);
  const start = process.hrtime.bigint();
  for (const b of batches) ws.forwardBackward(model.params, grad, dims, b);
  return Number(process.hrtime.bigint() - start) / 1e9;
};
const a = [];
const b = [];
for (let p = 0; p < Number(values.passes); p++) {
  a.push(pass(A));
  b.push(pass(B));
}
const ratios = a.map((t, i) => t / b[i]);
console.log(
  `A ${(trees.length / median(a)).toFixed(0)} sentences/s, B ${(trees.length / median(b)).toFixed(0)} sentences/s; ` +
    `B/A median ${median(ratios).toFixed(3)} (per pass: ${ratios.map((r) => r.toFixed(2)).join(' ')})`,
);
