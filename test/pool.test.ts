import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeModel } from '../src/model-file';
import { syntheticSplits } from '../src/synthetic';
import { TreeTable } from '../src/batch';
import { Model } from '../src/model';
import { createWorkspace, nativeDims } from '../src/native';
import { denseShares, TrainingPool, updateShare, type UpdateConfig } from '../src/pool';
import { parseTrees } from '../src/tree';
import { Vocabulary } from '../src/vocab';
import { AdaGrad, DEFAULT_TRAIN_OPTIONS, splitIntoShards, train, updateConfig, type TrainOptions } from '../src/train';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-pool-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const data = syntheticSplits(4);
// Dropout on: its masks must not depend on the thread count either; roots weighted, so the workers' schedules carry
// weights; the polarity term on, with another weight at the roots, so they carry its weights too.
const options: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS, dim: 6, batchSize: 13, epochs: 3, seed: 2, shards: 4, dropout: 0.3, rootWeight: 2, polarityWeight: 0.5, rootPolarityWeight: 1.5 };

describe('multi-threaded training', () => {
  it('gives byte-identical models for 1, 2, 3 and 4 threads', async () => {
    const files = [];
    for (const threads of [1, 2, 3, 4]) {
      // 197 = 15 · 13 + 2: each epoch's last batch has 2 trees for 4 shards, so two shards are empty.
      const result = await train(data.train.slice(0, 197), data.dev.slice(0, 50), { ...options, threads });
      files.push(encodeModel(result.model));
    }
    for (const file of files.slice(1)) expect(file.equals(files[0])).toBe(true);
  });

  it('the shard count, not the thread count, fixes the arithmetic', async () => {
    // Without dropout: its masks are drawn per shard, so they differ between shard counts by design.
    const a = await train(data.train.slice(0, 200), undefined, { ...options, dropout: 0, threads: 1, shards: 1 });
    const b = await train(data.train.slice(0, 200), undefined, { ...options, dropout: 0, threads: 1, shards: 4 });
    // Same math, different summation order: close, but not the same bytes.
    expect(encodeModel(a.model).equals(encodeModel(b.model))).toBe(false);
    let worst = 0;
    for (let i = 0; i < a.model.params.length; i++) worst = Math.max(worst, Math.abs(a.model.params[i] - b.model.params[i]));
    expect(worst).toBeLessThan(1e-3);
  });

  it('splits a batch into shards of near-equal weight, each in batch order', () => {
    const trees = Int32Array.from([10, 11, 12, 13, 14, 15, 16]);
    const weight = (t: number) => [5, 1, 1, 4, 2, 2, 3][t - 10];
    // Heaviest first to the lightest shard (ties to the lower): 5→0, 4→1, 3→2, 2→2, 2→1, 1→0, 1→2.
    expect(splitIntoShards(trees, 3, weight).map((s) => Array.from(s))).toEqual([[10, 11], [13, 15], [12, 14, 16]]);
    expect(splitIntoShards(Int32Array.from([9]), 3).map((s) => Array.from(s))).toEqual([[9], [], []]);
    // Unit weights: sizes differ by at most one, and every tree lands exactly once.
    const shards = splitIntoShards(Int32Array.from({ length: 27 }, (_, i) => i), 4);
    expect(shards.map((s) => s.length)).toEqual([7, 7, 7, 6]);
    expect(shards.flatMap((s) => Array.from(s)).sort((a, b) => a - b)).toEqual(Array.from({ length: 27 }, (_, i) => i));
  });

  it('checks its batch size: a bad one at construction, a bigger batch when posted', async () => {
    const trees = data.train.slice(0, 10);
    const vocab = Vocabulary.fromTrees(trees);
    const model = Model.create(vocab, { dim: 4, seed: 1 });
    const shared = (n: number) => new Float32Array(new SharedArrayBuffer(4 * n));
    const params = shared(model.params.length);
    params.set(model.params);
    const update: UpdateConfig = { history: shared(params.length), epsilon: 1e-3, dense: [], rows: { offset: 0, dim: 4, lambda: 0 } };
    const table = TreeTable.fromTrees(trees, vocab, { shared: true }).data;
    const pool = (batchSize: number) =>
      new TrainingPool({ threads: 2, params, grads: [shared(params.length), shared(params.length)], table, dims: nativeDims(model), update, batchSize });
    for (const bad of [0, -1, 1.5, NaN]) expect(() => pool(bad)).toThrow(/batchSize must be a positive integer/);
    const p = pool(2);
    try {
      expect(() => p.post([Int32Array.of(0, 1), Int32Array.of(2)], { scale: 1, learningRate: 0.1 })).toThrow(/a batch of 3 trees is more than the pool's batch size, 2/);
      p.post([Int32Array.of(0), Int32Array.of(1)], { scale: 0.5, learningRate: 0.1 });
      const result = await p.finish();
      expect(result.gradientFinite).toBe(true);
      expect(result.loss).toBeGreaterThan(0);
    } finally {
      await p.close();
    }
  });

  it('reports a non-finite gradient even when the loss is finite', async () => {
    // One-word sentences use no V: a NaN there leaves the loss finite, but V's step (λ_V·θ) is NaN.
    const trees = parseTrees('(3 good)\n(1 bad)\n(4 good)\n');
    const vocab = Vocabulary.fromTrees(trees);
    const model = Model.create(vocab, { dim: 4, seed: 1 });
    const shared = (n: number) => new Float32Array(new SharedArrayBuffer(4 * n));
    const params = shared(model.params.length);
    params.set(model.params);
    params[model.layout.offsets.V + 5] = NaN;
    const update = updateConfig(model, { V: 0.3, W: 1e-3, Ws: 1e-4, L: 1e-4 }, { history: shared(params.length), epsilon: 1e-3 });
    const table = TreeTable.fromTrees(trees, vocab, { shared: true }).data;
    const pool = new TrainingPool({ threads: 2, params, grads: [shared(params.length), shared(params.length)], table, dims: nativeDims(model), update, batchSize: 3 });
    try {
      pool.post([Int32Array.of(0, 1), Int32Array.of(2)], { scale: 1 / 3, learningRate: 0.01 });
      const result = await pool.finish();
      expect(Number.isFinite(result.loss)).toBe(true);
      expect(result.gradientFinite).toBe(false);
    } finally {
      await pool.close();
    }
  });

  it("applies one AdaGrad step to the shards' summed gradient, and only to the batch's rows of L", async () => {
    const trees = data.train.slice(0, 8);
    // A vocabulary from more trees than the batch's: most rows of L are not the batch's.
    const vocab = Vocabulary.fromTrees(data.train.slice(0, 300));
    const model = Model.create(vocab, { dim: 5, seed: 3 });
    const dims = nativeDims(model);
    const shared = (n: number) => new Float32Array(new SharedArrayBuffer(4 * n));
    const params = shared(model.params.length);
    params.set(model.params);
    const history = shared(params.length);
    const lambda = { V: 0.3, W: 1e-3, Ws: 1e-4, L: 1e-2 };
    const update = updateConfig(model, lambda, { history, epsilon: 1e-3 });
    const table = TreeTable.fromTrees(trees, vocab, { shared: true });
    const shards = splitIntoShards(Int32Array.from(trees.keys()), 3);
    const grads = shards.map(() => shared(params.length));
    const pool = new TrainingPool({ threads: 2, params, grads, table: table.data, dims, update, batchSize: trees.length });
    const lr = 0.05;
    let result;
    try {
      pool.post(shards, { scale: 1 / trees.length, learningRate: lr });
      result = await pool.finish();
    } finally {
      await pool.close();
    }

    // The same step computed here: each shard's gradient on its own, summed, then AdaGrad from a fresh history.
    const ws = createWorkspace();
    const sum = new Float64Array(params.length);
    let loss = 0;
    for (const shard of shards) {
      const g = new Float32Array(params.length);
      loss += ws.forwardBackward(model.params, g, dims, table.compile(shard));
      g.forEach((x, i) => (sum[i] += x));
    }
    expect(result.loss).toBeCloseTo(loss, 3);
    expect(result.gradientFinite).toBe(true);
    const { offsets } = model.layout;
    const rows = new Set(table.compile(Int32Array.from(trees.keys())).words);
    expect(rows.size).toBeLessThan(vocab.size - 10);
    const lambdaAt = (i: number) =>
      i >= offsets.L ? lambda.L : i >= offsets.bs ? 0 : i >= offsets.Ws ? lambda.Ws : i >= offsets.b ? 0 : i >= offsets.W ? lambda.W : lambda.V;
    let worst = 0;
    for (let i = 0; i < params.length; i++) {
      const touched = i < offsets.L || rows.has(Math.floor((i - offsets.L) / dims.dim));
      if (!touched) {
        expect(params[i], `untouched row ${Math.floor((i - offsets.L) / dims.dim)}`).toBe(model.params[i]);
        expect(history[i]).toBe(0);
        continue;
      }
      const v = sum[i] / trees.length + lambdaAt(i) * model.params[i];
      worst = Math.max(worst, Math.abs(params[i] - (model.params[i] - (lr * v) / (Math.abs(v) + 1e-3))));
      expect(Math.abs(history[i] - v * v), `history ${i}`).toBeLessThanOrEqual(1e-5 * v * v + 1e-12);
    }
    expect(worst).toBeLessThan(1e-6);
    for (const g of grads) expect(g.every((x) => x === 0)).toBe(true);
  });

  it("shares each update out so that the workers' shares cover every index exactly once, each unit of V and W whole", () => {
    const vocab = new Vocabulary(['*UNK*', 'a', 'b', 'c', 'd', 'e', 'f', 'g']);
    const model = Model.create(vocab, { dim: 3, seed: 1 });
    const config = updateConfig(model, DEFAULT_TRAIN_OPTIONS.lambda, new AdaGrad(model.params.length, 1e-3));
    const dims = nativeDims(model);
    const rows = Int32Array.of(0, 2, 3, 7);
    const expected = new Map<number, number>();
    // λs travel as float32.
    for (const g of config.dense) for (let i = g.start; i < g.end; i++) expected.set(i, Math.fround(g.lambda));
    for (const r of rows) for (let q = 0; q < 3; q++) expected.set(config.rows.offset + 3 * r + q, Math.fround(config.rows.lambda));
    const { offsets } = model.layout;
    // Unit q < 3 of the prepared parameters is V[q] (36 values), unit 3 is W.
    const unitOf = (i: number) => (i < offsets.W ? Math.floor((i - offsets.V) / 36) : i < offsets.b ? 3 : -1);
    for (const workers of [1, 2, 3, 4, 7]) {
      const seen = new Map<number, number>();
      const steppedBy = new Map<number, number>();
      denseShares(config, dims, workers).forEach((share, w) => {
        for (let q = share.firstUnit; q < share.endUnit; q++) {
          expect(steppedBy.has(q), `unit ${q} stepped twice with ${workers} workers`).toBe(false);
          steppedBy.set(q, w);
        }
        // V and W: whole units, stepped from the packed gradients; the rest from the shards' buffers.
        const [V, W] = [config.dense[0].lambda, config.dense[1].lambda]; // updateConfig lists V, W, b, Ws, bs
        expect([share.lambdaV, share.lambdaW]).toEqual([V, W]);
        for (let i = share.from; i < share.unpackedTo; i++) {
          expect(seen.has(i), `index ${i} twice with ${workers} workers`).toBe(false);
          seen.set(i, Math.fround(i < offsets.W ? V : W));
          expect(unitOf(i) >= share.firstUnit && unitOf(i) < share.endUnit, `index ${i}'s unit stepped by worker ${w}`).toBe(true);
        }
        if (share.endUnit > share.firstUnit) expect(share.unpackedTo - share.from).toBe(36 * Math.min(share.endUnit, 3) - 36 * share.firstUnit + (share.endUnit > 3 ? 18 : 0));
        const { ranges, lambdas } = updateShare(config, share, rows, w, workers);
        for (let j = 0; j < lambdas.length; j++) {
          for (let i = ranges[2 * j]; i < ranges[2 * j + 1]; i++) {
            expect(seen.has(i), `index ${i} twice with ${workers} workers`).toBe(false);
            expect(unitOf(i), `index ${i} of V or W among the summed ranges`).toBe(-1);
            seen.set(i, lambdas[j]);
          }
        }
      });
      expect(new Map([...seen].sort((a, b) => a[0] - b[0]))).toEqual(expected);
      expect([...steppedBy.keys()].sort()).toEqual([0, 1, 2, 3]);
    }
    // Dense groups that cut a unit would leave it stale.
    const cutting = { ...config, dense: [{ start: 10, end: offsets.b, lambda: 0 }] };
    expect(() => denseShares(cutting, dims, 2)).toThrow(/cover V and W whole, or neither/);
    expect(denseShares({ ...config, dense: [] }, dims, 2).every((s) => s.firstUnit === s.endUnit)).toBe(true);
  });

  // Runs a pool with a worker script that fails, in a child process: the run
  // must reject with the worker's error and the process must then exit by
  // itself (no thread, timer or handle left behind).
  for (const [name, body, message] of [
    ['throws', `throw new Error('worker exploded');`, /worker exploded/],
    ['dies', `process.exit(7);`, /a training worker exited unexpectedly \(exit code 7\)/],
  ] as const) {
    it(`a worker that ${name} fails the run, and the process exits afterwards`, () => {
      const worker = path.join(tmp, `failing-${name}.js`);
      // It fails a moment after start, while the main thread waits for the batch.
      fs.writeFileSync(worker, `setTimeout(() => { ${body} }, 50);\n`);
      const script = `
        const { TrainingPool } = require(${JSON.stringify(path.resolve(__dirname, '../lib/pool.js'))});
        const shared = (n) => new Float32Array(new SharedArrayBuffer(4 * n));
        // dims 1, 2 classes, 4 words: 15 parameters.
        const update = { history: shared(15), epsilon: 1e-3, dense: [], rows: { offset: 11, dim: 1, lambda: 0 } };
        const dims = { dim: 1, classes: 2, vocab: 4, leafTanh: false };
        const pool = new TrainingPool({ threads: 2, params: shared(15), grads: [shared(15), shared(15)], table: { treeStart: Int32Array.of(0, 1, 2) }, dims, update, workerScript: ${JSON.stringify(worker)} });
        pool.post([Int32Array.of(0), Int32Array.of(1)], { scale: 1, learningRate: 0.1 });
        pool.finish().then(
          () => { console.log('resolved'); },
          (e) => { console.log('rejected: ' + e.message); },
        );`;
      const started = Date.now();
      const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
      expect(run.signal, 'the process hung and was killed').toBeNull();
      expect(run.stdout).toMatch(new RegExp('rejected: ' + message.source));
      expect(Date.now() - started).toBeLessThan(30_000);
    });
  }

  it('a shard that fails in one real worker fails the run while the other waits for it, and the process exits', () => {
    // Shard 1 names a tree the table does not have: the worker that claims
    // it throws, and the other, done with shard 0 and its weight gradient,
    // waits for shard 1 to be ready so that it can claim that one's too (or,
    // when it claimed both shards, throws itself).
    const script = `
      const { TrainingPool } = require(${JSON.stringify(path.resolve(__dirname, '../lib/pool.js'))});
      const { TreeTable } = require(${JSON.stringify(path.resolve(__dirname, '../lib/batch.js'))});
      const { Model } = require(${JSON.stringify(path.resolve(__dirname, '../lib/model.js'))});
      const { nativeDims } = require(${JSON.stringify(path.resolve(__dirname, '../lib/native.js'))});
      const { syntheticSplits } = require(${JSON.stringify(path.resolve(__dirname, '../lib/synthetic.js'))});
      const { Vocabulary } = require(${JSON.stringify(path.resolve(__dirname, '../lib/vocab.js'))});
      const trees = syntheticSplits(1).train.slice(0, 20);
      const vocab = Vocabulary.fromTrees(trees);
      const model = Model.create(vocab, { dim: 4, seed: 1 });
      const shared = (n) => new Float32Array(new SharedArrayBuffer(4 * n));
      const params = shared(model.params.length);
      params.set(model.params);
      const update = { history: shared(params.length), epsilon: 1e-3, dense: [], rows: { offset: 0, dim: 4, lambda: 0 } };
      const table = TreeTable.fromTrees(trees, vocab, { shared: true });
      const pool = new TrainingPool({ threads: 2, params, grads: [shared(params.length), shared(params.length)], table: table.data, dims: nativeDims(model), update });
      pool.post([Int32Array.of(0, 1, 2), Int32Array.of(5, 1e6)], { scale: 0.2, learningRate: 0.1 });
      pool.finish().then(
        () => { console.log('resolved'); },
        (e) => { console.log('rejected: ' + e.message); },
      );`;
    // Several times: terminating the waiting worker while it is inside the
    // addon once aborted the process in about one run of six (CMakeLists.txt).
    for (let i = 0; i < 8; i++) {
      const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
      expect(run.signal, `run ${i}: the process hung or aborted`).toBeNull();
      expect(run.stdout).toMatch(/rejected: tree index 1000000 is outside the table \(20 trees\)/);
    }
  });
});
