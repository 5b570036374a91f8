// What the benchmarks share: where SST is, skipping when it is absent, the
// model's nominal work (DESIGN.md's performance model), and medians.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** The compiled package (tsc emits it into lib/ at install and in npm test). */
const lib = (name) => require(path.resolve(__dirname, '../lib', name));

/** ../shared/data/sst beside the project. */
const SST_DIR = path.resolve(__dirname, '../../shared/data/sst');

/** Exits successfully, saying so, when `file` (an SST split) is absent: the benchmarks need the treebank. */
function requireTreebank(file) {
  if (!fs.existsSync(file)) {
    console.log(`skipped: ${file} is absent (the benchmark needs the Stanford Sentiment Treebank)`);
    process.exit(0);
  }
}

/**
 * The trees of an SST split (exiting, saying so, when it is absent), their
 * internal-node count (nominalFlops' input) and each tree's node count (the
 * weight the trainer splits shards by).
 */
function readTreebank(file) {
  requireTreebank(file);
  const { readTrees, countNodes } = lib('tree');
  const trees = readTrees(file);
  let internal = 0;
  const sizes = new Int32Array(trees.length);
  trees.forEach((t, i) => {
    const count = countNodes(t);
    internal += count.internal;
    sizes[i] = count.leaves + count.internal;
  });
  return { trees, internal, sizes };
}

/**
 * Floating-point operations of one forward+backward pass as DESIGN.md counts
 * the model's work: three (2d²+d)·2d tensor-and-matrix products per internal
 * node (forward, error pass, ∂V/∂W), multiply-adds counted as two. The core
 * skips most of the error-pass product (it reuses the forward pass's Vs·c),
 * so rates from this are *effective*: comparable across implementations of
 * the same model, not the BLAS rate.
 */
function nominalFlops(dim, internalNodes) {
  return 2 * 3 * (2 * dim * dim + dim) * 2 * dim * internalNodes;
}

/**
 * A numeric flag's value, or exit status 2 with a message naming the flag:
 * never the 0 that Number('') makes of a blank value (an unset shell
 * variable), nor NaN. `integer` and `min` as the flag needs.
 */
function numberFlag(name, text, { integer = false, min = -Infinity } = {}) {
  const n = String(text).trim() === '' ? NaN : Number(text);
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min) {
    const expected = `${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` >= ${min}` : ''}`;
    console.error(`--${name}: expected ${expected}, got ${JSON.stringify(text)}`);
    process.exit(2);
  }
  return n;
}

/** A comma-separated list of numbers (`--seeds 1,2,3`), each checked as numberFlag does. */
function numberList(name, text, options) {
  return String(text)
    .split(',')
    .map((item) => numberFlag(name, item, options));
}

function median(xs) {
  return [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
}

module.exports = { lib, SST_DIR, requireTreebank, readTreebank, nominalFlops, median, numberFlag, numberList };
