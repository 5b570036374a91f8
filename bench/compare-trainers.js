#!/usr/bin/env node
// Two builds of the whole trainer (pool, workers and addon), side by side in
// one process: the figure for "is this change to the pool faster?" on a
// shared machine. Each round trains SST train for 2 epochs (--epochs) with
// build A and with build B (the order alternating ABBA from round to round, so
// a drift of the machine's speed hits both alike) and compares the median
// sentences/s of their epochs after the first; it prints every round's ratio
// B/A and the median. The first epoch warms up the workers' JIT; a change to
// the workers' JavaScript can move how long that takes, so check one with
// --epochs 4 too: the second epoch alone can still be warming up.
//
// Why rounds and not one long run each: this machine's speed moves by tens of
// percent within a minute. The same build against itself gave per-round
// ratios between 0.64 and 1.42 here (8 rounds, 1 thread), so a difference of
// a few percent needs a few dozen rounds, or a per-phase timing.
//
//   node bench/compare-trainers.js A B [--threads 2] [--rounds 16] [--epochs 2] [--options JSON]
//   A and B are roots of built checkouts (each with lib/ compiled and its
//   addon built), e.g. a `git worktree` of the commit before the change and
//   this checkout. Each trains with its own DEFAULT_TRAIN_OPTIONS; --options
//   (e.g. '{"polarityWeight":1}') overrides some of them in both, so that two
//   builds whose defaults differ can be timed on the same loss.
'use strict';
const path = require('node:path');
const { parseArgs } = require('node:util');
const { SST_DIR, median, numberFlag, requireTreebank } = require('./common');

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '16' },
    epochs: { type: 'string', default: '2' },
    train: { type: 'string', default: path.join(SST_DIR, 'train.txt') },
    options: { type: 'string', default: '{}' },
  },
});
if (positionals.length !== 2) {
  console.error('usage: node bench/compare-trainers.js A B [--threads 2] [--rounds 16] [--epochs 2] [--options JSON]');
  process.exit(2);
}
const threads = numberFlag('threads', values.threads, { integer: true, min: 1 });
const rounds = numberFlag('rounds', values.rounds, { integer: true, min: 1 });
const epochs = numberFlag('epochs', values.epochs, { integer: true, min: 2 }); // the first warms up
let overrides;
try {
  overrides = JSON.parse(values.options);
} catch (error) {
  console.error(`--options: ${error.message}`);
  process.exit(2);
}
if (typeof overrides !== 'object' || overrides === null || Array.isArray(overrides)) {
  console.error('--options must be a JSON object of training options, e.g. \'{"polarityWeight":1}\'');
  process.exit(2);
}
requireTreebank(values.train);
// Each root's lib/ is a separate module tree, and its pool starts its own workers from it.
const builds = positionals.map((root) => require(path.resolve(root, 'lib', 'train.js')));
const trees = require(path.resolve(positionals[0], 'lib', 'tree.js')).readTrees(values.train);

/** Median sentences/s of the epochs after the first with build i (the first warms up the workers). */
async function afterFirstEpoch(i) {
  const { train, DEFAULT_TRAIN_OPTIONS } = builds[i];
  const result = await train(trees, undefined, { ...DEFAULT_TRAIN_OPTIONS, ...overrides, epochs, threads });
  return median(result.records.slice(1).map((r) => r.sentencesPerSecond));
}

(async () => {
  console.log(`A = ${positionals[0]}, B = ${positionals[1]}; ${threads} thread(s), ${rounds} rounds of ${epochs} epochs each, ABBA order; options ${JSON.stringify(overrides)} over each build's defaults`);
  const rates = [[], []];
  const ratios = [];
  for (let round = 0; round < rounds; round++) {
    const got = [];
    for (const i of round % 2 ? [1, 0] : [0, 1]) got[i] = await afterFirstEpoch(i);
    got.forEach((rate, i) => rates[i].push(rate));
    ratios.push(got[1] / got[0]);
    console.log(`round ${round + 1}: A ${got[0].toFixed(0)}, B ${got[1].toFixed(0)} sentences/s, B/A ${(got[1] / got[0]).toFixed(3)}`);
  }
  const faster = ratios.filter((r) => r > 1).length;
  console.log(
    `median A ${median(rates[0]).toFixed(0)}, B ${median(rates[1]).toFixed(0)} sentences/s; ` +
      `B/A per round: median ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}), B faster in ${faster} of ${rounds}`,
  );
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
