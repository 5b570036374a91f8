#!/usr/bin/env node
// How much of a model's root 5-class accuracy is where it puts the neutral
// threshold: shifts the neutral class's bias bs[C/2] of each trained model by
// δ and scores SST dev and test again, averaging over the models. The binary
// metrics cannot move (they compare the two sides' probability mass, whose
// ratio the neutral bias does not touch); the 5-class ones can. Also prints
// per-class recall at the roots. docs/training.md, "The polarity term,
// looked at again", has what it showed.
//
//   node bench/neutral-shift.js MODEL... [--deltas=-0.6,0,0.6] [--sst DIR]   (with "=": the list may start with a minus)
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');
const { lib, SST_DIR, numberList, requireTreebank } = require('./common');
const { loadModel } = lib('model-file');
const { evaluate } = lib('evaluate');
const { readTrees } = lib('tree');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    deltas: { type: 'string', default: '-1,-0.6,-0.3,0,0.3,0.6,1' },
    sst: { type: 'string', default: SST_DIR },
  },
});
if (positionals.length === 0) throw new Error('usage: node bench/neutral-shift.js MODEL... [--deltas=-0.6,0,0.6]');
const deltas = numberList('deltas', values.deltas);
requireTreebank(path.join(values.sst, 'dev.txt'));
const [dev, test] = ['dev', 'test'].map((s) => readTrees(path.join(values.sst, `${s}.txt`)));

const sums = deltas.map(() => ({ devRoot: 0, testRoot: 0, testAll: 0, testRootBinary: 0, neutralCalls: 0, recall: [] }));
for (const file of positionals) {
  const model = loadModel(file);
  const C = model.config.classes;
  if (C % 2 === 0) throw new Error(`${file}: ${C} classes, no neutral middle class`);
  const bs = model.tensors.bs;
  const neutral = Math.floor(C / 2);
  const original = bs[neutral];
  deltas.forEach((delta, i) => {
    bs[neutral] = original + delta;
    const d = evaluate(model, dev);
    const t = evaluate(model, test);
    const s = sums[i];
    s.devRoot += d.rootFine;
    s.testRoot += t.rootFine;
    s.testAll += t.allFine;
    s.testRootBinary += t.rootBinary;
    s.neutralCalls += t.confusion.root.reduce((n, row) => n + row[neutral], 0);
    t.perClass.root.forEach((c, k) => (s.recall[k] = (s.recall[k] ?? 0) + c.recall));
  });
}
const n = positionals.length;
const pct = (x) => ((100 * x) / n).toFixed(2);
console.log(`${n} model(s), SST dev and test; means over the models`);
console.log('| δ (neutral bias) | dev root | test root | test all | test root binary | test roots called neutral | test root recall per class |');
console.log('|---|---|---|---|---|---|---|');
deltas.forEach((delta, i) => {
  const s = sums[i];
  const recall = s.recall.map((r) => ((100 * r) / n).toFixed(1)).join(' / ');
  console.log(`| ${delta} | ${pct(s.devRoot)} | ${pct(s.testRoot)} | ${pct(s.testAll)} | ${pct(s.testRootBinary)} | ${(s.neutralCalls / n).toFixed(0)} | ${recall} |`);
});
