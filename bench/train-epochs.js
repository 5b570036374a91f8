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
// Two references come from the same rounds, because a speed-up on a shared
// virtual machine says as much about the host as about the pool:
// - "independent streams": N worker threads each run the pool's forward+
//   backward work for a whole epoch (SST train shuffled into batches and
//   split into shards as the trainer does it, one native call per batch)
//   with no synchronisation, no update and nothing shared; their combined
//   rate over one stream's is the speed-up these cores give this work at
//   all, the ceiling for the pool's;
// - the hypervisor's steal: the share of CPU time /proc/stat counts as stolen
//   while a configuration trained (Linux only).
//
//   node bench/train-epochs.js [--threads 1,2] [--shards 4] [--epochs 3] [--rounds 3] [--dim 25]
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { lib, SST_DIR, readTreebank, nominalFlops, median, numberFlag, numberList } = require('./common');
const { train, splitIntoShards, DEFAULT_TRAIN_OPTIONS } = lib('train');
const { createWorkspace, describeBlas, native, nativeDims } = lib('native');

if (!isMainThread) {
  independentStream(workerData);
  return;
}

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
const d = numberFlag('dim', values.dim, { integer: true, min: 1 });
const rounds = numberFlag('rounds', values.rounds, { integer: true, min: 1 });
const epochs = numberFlag('epochs', values.epochs, { integer: true, min: 2 }); // the first is excluded
const flopsPerEpoch = nominalFlops(d, internal);
const gflops = (rate) => (flopsPerEpoch * rate) / trees.length / 1e9;

(async () => {
  console.log(describeBlas());
  console.log(
    `${trees.length} trees, d=${d}, batch ${DEFAULT_TRAIN_OPTIONS.batchSize}; ${rounds} rounds of ` +
      `${epochs} epochs per configuration (first excluded), configurations alternating`,
  );
  const configs = numberList('shards', values.shards, { integer: true, min: 1 }).flatMap((shards) =>
    numberList('threads', values.threads, { integer: true, min: 1 }).map((threads) => ({ shards, threads, rates: [], sgemm: [], steal: [], streams: [] })),
  );
  for (let round = 1; round <= rounds; round++) {
    for (const c of configs) {
      c.sgemm.push(native().sgemmRate(1024, 5));
      const before = cpuTicks();
      const result = await train(trees, undefined, { ...DEFAULT_TRAIN_OPTIONS, dim: d, epochs, threads: c.threads, shards: c.shards });
      c.steal.push(stealShare(before, cpuTicks()));
      c.rates.push(median(result.records.slice(1).map((r) => r.sentencesPerSecond)));
    }
    for (const c of configs) c.streams.push(await independentStreams(c.threads, c.shards));
    const at = (c) => `shards=${c.shards} threads=${c.threads} ${c.rates[round - 1].toFixed(0)} (streams ${c.streams[round - 1].toFixed(0)}, steal ${percent(c.steal[round - 1])})`;
    console.log(`round ${round}: ${configs.map(at).join(', ')} sentences/s`);
  }
  console.log(
    '\n| shards | threads | sentences/s | effective GFLOP/s | sgemm 1024³ (1 thread) | ratio | steal | speed-up over 1 thread | independent streams\' speed-up | pool / streams |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|---|');
  for (const c of configs) {
    const rate = median(c.rates);
    const peak = median(c.sgemm);
    const one = configs.find((o) => o.shards === c.shards && o.threads === 1);
    let speedups = '| | |';
    if (one && c !== one) {
      const pool = c.rates.map((r, i) => r / one.rates[i]);
      const streams = c.streams.map((r, i) => r / one.streams[i]);
      const rounds = (xs) => xs.map((x) => x.toFixed(2)).join(', ');
      speedups =
        `${median(pool).toFixed(2)}× (per round: ${rounds(pool)}) | ${median(streams).toFixed(2)}× (per round: ${rounds(streams)}) | ` +
        `${median(pool.map((p, i) => p / streams[i])).toFixed(2)} |`;
    }
    console.log(`| ${c.shards} | ${c.threads} | ${rate.toFixed(0)} | ${gflops(rate).toFixed(1)} | ${peak.toFixed(1)} | ${(gflops(rate) / peak).toFixed(3)} | ${percent(median(c.steal))} | ${speedups}`);
  }
})();

/** Aggregate sentences/s of `threads` unsynchronised streams of the pool's forward+backward work (see the top). */
function independentStreams(threads, shards) {
  const start = new Int32Array(new SharedArrayBuffer(4));
  const workers = Array.from({ length: threads }, () => new Worker(__filename, { workerData: { file: values.train, dim: d, shards, start } }));
  // A stream that throws or exits early fails the benchmark instead of hanging it.
  const next = (w) =>
    new Promise((resolve, reject) =>
      w
        .once('message', resolve)
        .once('error', reject)
        .once('exit', (code) => reject(new Error(`a stream exited (code ${code}) before reporting`))),
    );
  const ready = workers.map(next);
  const savedBlasThreads = native().blasThreads();
  native().blasThreads(1); // as the pool does: one OpenBLAS thread per worker
  return Promise.all(ready)
    .then(() => {
      // Every stream has parsed, compiled and run its warm-up pass: start the timed passes together.
      const began = process.hrtime.bigint();
      const done = workers.map(next);
      Atomics.store(start, 0, 1);
      Atomics.notify(start, 0);
      return Promise.all(done).then(() => (threads * trees.length) / (Number(process.hrtime.bigint() - began) / 1e9));
    })
    .finally(() => {
      native().blasThreads(savedBlasThreads);
      for (const w of workers) w.terminate();
    });
}

/** One stream: SST train shuffled into batches and split into shards as the trainer does it, one pass timed. */
function independentStream({ file, dim, shards, start }) {
  const { compileBatch } = lib('batch');
  const { Model } = lib('model');
  const { Vocabulary } = lib('vocab');
  const { Random } = lib('random');
  const { trees, sizes } = readTreebank(file);
  const vocab = Vocabulary.fromTrees(trees, DEFAULT_TRAIN_OPTIONS.minCount);
  const model = Model.create(vocab, { dim, seed: 1 });
  const dims = nativeDims(model);
  const batchSize = DEFAULT_TRAIN_OPTIONS.batchSize;
  const batches = [];
  const order = new Random(1).shuffle(Array.from(trees.keys()));
  for (let b = 0; b < trees.length; b += batchSize) {
    const members = Int32Array.from(order.slice(b, b + batchSize));
    batches.push(splitIntoShards(members, shards, (t) => sizes[t]).map((shard) => compileBatch(Array.from(shard, (t) => trees[t]), vocab)));
  }
  const grads = Array.from({ length: shards }, () => new Float32Array(model.params.length));
  const workspace = createWorkspace();
  const pass = () => {
    // The gradients are never zeroed: the trainer zeroes only what its update
    // touched, inside the update, which streams leave out. A memset of every
    // shard's whole buffer per batch (7 MB) made one stream slower than the
    // whole 1-thread pool. What the sums grow to does not change the speed.
    for (const schedules of batches) workspace.forwardBackwardShards(model.params, grads, dims, schedules);
  };
  pass();
  parentPort.postMessage('ready');
  Atomics.wait(start, 0, 0);
  pass();
  parentPort.postMessage('done');
}

/** [steal, total] CPU ticks from /proc/stat's first line; undefined where there is none. */
function cpuTicks() {
  try {
    const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
    return [fields[7], fields.reduce((a, b) => a + b, 0)];
  } catch {
    return undefined;
  }
}

function stealShare(before, after) {
  return before && after && after[1] > before[1] ? (after[0] - before[0]) / (after[1] - before[1]) : undefined;
}

function percent(x) {
  return x === undefined ? 'n/a' : `${(100 * x).toFixed(1)} %`;
}
