import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import * as path from 'node:path';
import { compileBatch } from '../src/batch';
import { Model } from '../src/model';
import { blasInfo, chooseCoretype, createWorkspace, native, nativeDims, weightGradientInputSize, weightGradientParts, type Schedule } from '../src/native';
import { parseTrees } from '../src/tree';
import { randomTrees } from '../src/synthetic';
import { Vocabulary } from '../src/vocab';

const vocab = new Vocabulary(['*UNK*', 'good', 'bad']);
const model = Model.create(vocab, { dim: 4, seed: 1 });
const dims = nativeDims(model);
const prepared = () => new Float32Array(native().preparedSize(dims.dim));
const packed = () => new Float32Array(native().packedWeightGradientSize(dims.dim));
const trees = parseTrees('(3 (2 (3 good) (1 bad)) (4 good))\n(1 bad)');
const batch = compileBatch(trees, vocab);
const schedule = (): Schedule => ({
  left: batch.left.slice(),
  right: batch.right.slice(),
  word: batch.word.slice(),
  label: batch.label.slice(),
  levelStart: batch.levelStart.slice(),
});

describe('the native addon', () => {
  it('says which OpenBLAS kernel runs and who chose it', () => {
    const info = blasInfo();
    expect(info.corename).toMatch(/\w+/);
    expect(info.config).toMatch(/OpenBLAS/);
    expect(['user', 'rntn', 'openblas']).toContain(info.coretype.chosenBy);
    if (process.env.OPENBLAS_CORETYPE !== undefined && info.coretype.chosenBy !== 'rntn') {
      expect(info.coretype.chosenBy).toBe('user');
    }
  });

  it('checks its GEMM kernels at load and they compute correct products', () => {
    const check = native().gemmSelfTest();
    expect(check.float32).toBeLessThan(1e-5);
    expect(check.float64).toBeLessThan(1e-13);
  });

  it('uses a float tanh within 2e-7 relative error', () => {
    expect(native().tanhMaxRelativeError()).toBeLessThan(2e-7);
  });

  it('chooses kernels from the instruction set, and nothing on CPUs it does not know', () => {
    const avx512 = new Set(['avx2', 'fma', 'avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl']);
    expect(chooseCoretype(avx512)).toBe('SKYLAKEX');
    expect(chooseCoretype(new Set(['avx2', 'fma', 'avx512f']))).toBe('HASWELL');
    expect(chooseCoretype(new Set(['avx2', 'fma']))).toBe('HASWELL');
    expect(chooseCoretype(new Set(['sse4_2']))).toBeUndefined();
  });

  it('leaves a user-set OPENBLAS_CORETYPE alone, even an empty one', async () => {
    const { spawnSync } = await import('node:child_process');
    const script = `require(${JSON.stringify(path.resolve(__dirname, '../lib/native.js'))}).blasInfo()`;
    for (const value of ['Haswell', '']) {
      const out = spawnSync(process.execPath, ['-p', `JSON.stringify([${script}.coretype, process.env.OPENBLAS_CORETYPE])`], {
        env: { ...process.env, OPENBLAS_CORETYPE: value },
        encoding: 'utf8',
      });
      expect(out.status, out.stderr).toBe(0);
      expect(JSON.parse(out.stdout)).toEqual([{ value, chosenBy: 'user' }, value]);
    }
  });

  it('gives the same loss in forward and forwardBackward, and probabilities that sum to 1', () => {
    const ws = createWorkspace();
    const probs = new Float32Array(dims.classes * batch.left.length);
    const lossF = ws.forward(model.params, dims, schedule(), probs);
    const lossFB = ws.forwardBackward(model.params, new Float32Array(model.params.length), dims, schedule());
    expect(lossF).toBeGreaterThan(0);
    expect(lossFB).toBeCloseTo(lossF, 6);
    for (let n = 0; n < batch.left.length; n++) {
      const sum = probs.subarray(n * dims.classes, (n + 1) * dims.classes).reduce((a, b) => a + b, 0);
      expect(sum).toBeCloseTo(1, 6);
    }
  });
});

describe('wide schedules at d = 25', () => {
  // Levels of 16 or more nodes run the forward product in row chunks, and
  // more than ~48 internal nodes take several weight-gradient windows
  // (rntn.h, forwardProduct and kWeightGradientWindowBytes): a batch must
  // give what its trees give one at a time (narrower levels, one window).
  const words = ['*UNK*', 'good', 'bad', 'not', 'plot'];
  const wide = new Vocabulary(words);
  const big = Model.create(wide, { dim: 25, seed: 2 });
  const bigDims = nativeDims(big);
  const forest = randomTrees(5, 120, words, 5, 40);
  const ws = createWorkspace();
  const run = (trees: typeof forest) => {
    const b = compileBatch(trees, wide);
    const probs = new Float32Array(bigDims.classes * b.left.length);
    const grad = new Float32Array(big.params.length);
    const loss = ws.forwardBackward(big.params, grad, bigDims, b);
    ws.forward(big.params, bigDims, b, probs);
    return { b, probs, grad, loss };
  };

  it('gives each tree the root probabilities and gradient it has alone', () => {
    const all = run(forest);
    const { levelStart } = all.b;
    const widths = Array.from({ length: levelStart.length - 2 }, (_, l) => levelStart[l + 2] - levelStart[l + 1]);
    expect(Math.max(...widths)).toBeGreaterThanOrEqual(16);
    expect(widths.filter((w) => w >= 16 && w < 128).length).toBeGreaterThan(1);
    const C = bigDims.classes;
    const sum = new Float64Array(big.params.length);
    let loss = 0;
    let worst = 0;
    forest.forEach((tree, t) => {
      const one = run([tree]);
      loss += one.loss;
      one.grad.forEach((g, i) => (sum[i] += g));
      const r = one.b.roots[0];
      const R = all.b.roots[t];
      for (let c = 0; c < C; c++) worst = Math.max(worst, Math.abs(one.probs[r * C + c] - all.probs[R * C + c]));
    });
    expect(worst).toBeLessThan(1e-5);
    expect(Math.abs(all.loss - loss) / loss).toBeLessThan(1e-5);
    let diff2 = 0;
    let ref2 = 0;
    all.grad.forEach((g, i) => {
      diff2 += (g - sum[i]) ** 2;
      ref2 += sum[i] ** 2;
    });
    expect(Math.sqrt(diff2 / ref2)).toBeLessThan(1e-5);
  });
});

describe('the native boundary rejects bad arguments with a JavaScript error', () => {
  const ws = createWorkspace();
  const grad = () => new Float32Array(model.params.length);
  const cases: [string, () => unknown, RegExp][] = [
    ['too few arguments', () => (ws.forwardBackward as any)(model.params, grad(), dims), /takes 4 arguments/],
    ['params not a typed array', () => ws.forwardBackward([1, 2] as any, grad(), dims, schedule()), /params must be a typed array/],
    ['params of the wrong type', () => ws.forwardBackward(new Int32Array(model.params.length) as any, grad(), dims, schedule()), /Float32Array or Float64Array/],
    ['params too short', () => ws.forwardBackward(model.params.subarray(1), grad(), dims, schedule()), /params has \d+ values, dims need/],
    ['grad of another precision', () => ws.forwardBackward(model.params, new Float64Array(model.params.length) as any, dims, schedule()), /grad must be a Float32Array/],
    ['grad too long', () => ws.forwardBackward(model.params, new Float32Array(model.params.length + 1), dims, schedule()), /grad has/],
    ['grad aliasing params', () => ws.forwardBackward(model.params, model.params, dims, schedule()), /must not share memory/],
    ['dims not an object', () => ws.forwardBackward(model.params, grad(), 4 as any, schedule()), /dims must be an object/],
    ['dim not an integer', () => ws.forwardBackward(model.params, grad(), { ...dims, dim: 2.5 }, schedule()), /dims.dim must be an integer/],
    ['dim absurd', () => ws.forwardBackward(model.params, grad(), { ...dims, dim: 1e9 }, schedule()), /dims.dim must be an integer in \[1, 512\]/],
    ['one class', () => ws.forwardBackward(model.params, grad(), { ...dims, classes: 1 }, schedule()), /dims.classes/],
    ['leafTanh missing', () => ws.forwardBackward(model.params, grad(), { dim: 4, classes: 5, vocab: 3 } as any, schedule()), /leafTanh must be a boolean/],
    ['schedule not an object', () => ws.forwardBackward(model.params, grad(), dims, null as any), /schedule must be an object/],
    ['word ids not Int32Array', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), word: Float32Array.from(batch.word) as any }), /schedule.word must be an Int32Array/],
    ['arrays of unequal length', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), label: batch.label.subarray(1) }), /same length/],
    ['word id out of range', () => {
      const s = schedule();
      s.word[0] = 3;
      return ws.forwardBackward(model.params, grad(), dims, s);
    }, /word id 3 of node 0 \(level 0\) must be in \[0, 3\)/],
    ['negative word id', () => {
      const s = schedule();
      s.word[1] = -5;
      return ws.forwardBackward(model.params, grad(), dims, s);
    }, /word id -5/],
    ['label out of range', () => {
      const s = schedule();
      s.label[2] = 5;
      return ws.forwardBackward(model.params, grad(), dims, s);
    }, /label 5 of node 2/],
    ['child pointing forward', () => {
      const s = schedule();
      const n = s.levelStart[1];
      s.left[n] = s.left.length - 1;
      return ws.forwardBackward(model.params, grad(), dims, s);
    }, /must be a node of an earlier level/],
    ['child pointing at itself (a cycle)', () => {
      const s = schedule();
      const n = s.left.length - 1;
      s.right[n] = n;
      return ws.forwardBackward(model.params, grad(), dims, s);
    }, /must be a node of an earlier level/],
    ['child out of range', () => {
      const s = schedule();
      s.left[s.left.length - 1] = 1 << 30;
      return ws.forwardBackward(model.params, grad(), dims, s);
    }, /must be a node of an earlier level/],
    ['a leaf with children', () => {
      const s = schedule();
      s.left[0] = 1;
      return ws.forwardBackward(model.params, grad(), dims, s);
    }, /level 0 holds leaves/],
    ['levels not ending at the node count', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), levelStart: Int32Array.from([0, 3]) }), /must end at the node count/],
    ['decreasing levels', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), levelStart: Int32Array.from([0, 4, 2, batch.left.length]) }), /non-decreasing/],
    ['empty levelStart', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), levelStart: new Int32Array(0) }), /at least 2 entries/],
    ['dropout not an object', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), dropout: 0.5 as any }), /schedule.dropout must be an object/],
    ['dropout rate of 1', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), dropout: { rate: 1, seed: 1 } }), /rate must be in \[0, 1\)/],
    ['dropout rate NaN', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), dropout: { rate: NaN, seed: 1 } }), /rate must be in \[0, 1\)/],
    ['dropout seed negative', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), dropout: { rate: 0.5, seed: -1 } }), /seed must be an integer/],
    ['dropout seed fractional', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), dropout: { rate: 0.5, seed: 1.5 } }), /seed must be an integer/],
    ['dropout seed a string', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), dropout: { rate: 0.5, seed: '1' as any } }), /must be numbers/],
    ['the old scalar polarityWeight', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), polarityWeight: 1 } as any), /schedule.polarityWeight is no longer read: give schedule.polarity/],
    ['polarity not a typed array', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), polarity: 1 as any }), /schedule.polarity must be a typed array/],
    ['polarity of the wrong length', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), polarity: new Float32Array(3) }), /schedule.polarity must have one entry per node \(\d+\), got 3/],
    ['polarity negative', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), polarity: new Float32Array(batch.left.length).fill(-0.5) }), /polarity\[0\] must be finite and non-negative, got -0.5/],
    ['polarity NaN', () => {
      const polarity = new Float32Array(batch.left.length);
      polarity[2] = NaN;
      return ws.forwardBackward(model.params, grad(), dims, { ...schedule(), polarity });
    }, /polarity\[2\] must be finite and non-negative/],
    ['polarity infinite', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), polarity: new Float32Array(batch.left.length).fill(Infinity) }), /must be finite and non-negative/],
    ['polarity with an even class count', () => {
      const six = Model.create(vocab, { dim: 4, seed: 1, classes: 6 });
      return ws.forwardBackward(six.params, new Float32Array(six.params.length), nativeDims(six), { ...schedule(), polarity: new Float32Array(batch.left.length).fill(1) });
    }, /schedule.polarity needs an odd number of classes \(the middle one is neutral\), the model has 6/],
    ['weight not a typed array', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), weight: [1, 1] as any }), /schedule.weight must be a typed array/],
    ['weight a Float64Array', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), weight: new Float64Array(batch.left.length) as any }), /schedule.weight must be a Float32Array/],
    ['weight of the wrong length', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), weight: new Float32Array(2) }), /must have one entry per node \(\d+\), got 2/],
    ['weight negative', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), weight: new Float32Array(batch.left.length).fill(-1) }), /weight\[0\] must be finite and non-negative/],
    ['weight NaN', () => {
      const weight = new Float32Array(batch.left.length).fill(1);
      weight[3] = NaN;
      return ws.forwardBackward(model.params, grad(), dims, { ...schedule(), weight });
    }, /weight\[3\] must be finite/],
    ['weight infinite', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), weight: new Float32Array(batch.left.length).fill(Infinity) }), /must be finite/],
    ['target not a typed array', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), target: [0.5, 0.5] as any }), /schedule.target must be a typed array/],
    ['target an Int32Array', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), target: new Int32Array(5 * batch.left.length) as any }), /schedule.target must be a Float32Array/],
    ['target one value per node', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), target: new Float32Array(batch.left.length) }), /schedule.target must have 5 entries per node \(\d+\), got \d+/],
    ['target negative', () => {
      const target = new Float32Array(5 * batch.left.length).fill(0.2);
      target[7] = -0.1;
      return ws.forwardBackward(model.params, grad(), dims, { ...schedule(), target });
    }, /schedule.target\[7\] must be finite and non-negative/],
    ['target NaN', () => ws.forwardBackward(model.params, grad(), dims, { ...schedule(), target: new Float32Array(5 * batch.left.length).fill(NaN) }), /target\[0\] must be finite/],
    ['probs of the wrong length', () => ws.forward(model.params, dims, schedule(), new Float32Array(3)), /probs has 3 values/],
    ['sgemmRate with a bad size', () => native().sgemmRate(-1, 1), /n must be an integer/],
    ['blasThreads with a bad count', () => native().blasThreads(0), /n must be an integer in \[1, 1024\]/],
    ['weightGradientInputSize with dim 0', () => native().weightGradientInputSize(0, 1), /dim must be an integer in \[1, 512\]/],
    ['weightGradientInputSize with a fractional node count', () => native().weightGradientInputSize(4, 1.5), /internal must be a non-negative integer/],
    ['preparedSize with dim 0', () => native().preparedSize(0), /dim must be an integer in \[1, 512\]/],
    ['prepareParameters: a unit past the last', () => native().prepareParameters(model.params, dims, prepared(), 0, dims.dim + 2), /first and end must be integers in \[0, 5\]/],
    ['prepareParameters: first after end', () => native().prepareParameters(model.params, dims, prepared(), 3, 2), /first must not be after end/],
    ['prepareParameters: a fractional unit', () => native().prepareParameters(model.params, dims, prepared(), 0.5, 2), /must be integers/],
    ['prepareParameters: prepared of the wrong length', () => native().prepareParameters(model.params, dims, new Float32Array(3), 0, 1), /prepared has 3 values, dims need 288/],
    ['prepareParameters: params too short', () => native().prepareParameters(model.params.subarray(1), dims, prepared(), 0, 1), /params has \d+ values, dims need/],
    ['prepareParameters: prepared inside params', () => native().prepareParameters(model.params, dims, model.params.subarray(0, 288), 0, 1), /params and prepared must not share memory/],
    ['shards: prepared of the wrong length', () => ws.forwardBackwardShards(model.params, [grad()], dims, [schedule()], undefined, new Float32Array(287)), /prepared has 287 values/],
    ['shards: prepared a Float64Array', () => ws.forwardBackwardShards(model.params, [grad()], dims, [schedule()], undefined, new Float64Array(288) as any), /prepared must be a Float32Array/],
    ['shards: prepared inside a gradient', () => {
      const g = grad();
      return ws.forwardBackwardShards(model.params, [g], dims, [schedule()], undefined, g.subarray(0, 288));
    }, /prepared shares memory with an output/],
    ['shards: grads and schedules of different lengths', () => ws.forwardBackwardShards(model.params, [grad()], dims, []), /same length/],
    ['shards: a float64 gradient', () => ws.forwardBackwardShards(model.params, [new Float64Array(model.params.length) as any], dims, [schedule()]), /grads\[0\] must be a Float32Array/],
    ['shards: two shards sharing a gradient buffer', () => {
      const g = grad();
      return ws.forwardBackwardShards(model.params, [g, g], dims, [schedule(), schedule()]);
    }, /shares memory with another output/],
    ['shards: deferTo not an array', () => ws.forwardBackwardShards(model.params, [grad()], dims, [schedule()], new Float32Array(100) as any), /deferTo must be an array/],
    ['shards: deferTo of another length', () => ws.forwardBackwardShards(model.params, [grad()], dims, [schedule()], []), /deferTo and schedules must have the same length/],
    ['shards: deferTo too short for the schedule', () => ws.forwardBackwardShards(model.params, [grad()], dims, [schedule()], [new Float32Array(23)]), /deferTo\[0\] has 23 values, the schedule needs at least 24/],
    ['shards: deferTo inside a gradient', () => {
      const g = grad();
      return ws.forwardBackwardShards(model.params, [g], dims, [schedule()], [g.subarray(0, 24)]);
    }, /deferTo\[0\] shares memory with another output/],
    ['shards: deferTo inside params', () => ws.forwardBackwardShards(model.params, [grad()], dims, [schedule()], [model.params.subarray(0, 24)]), /params and deferTo\[0\] must not share memory/],
    ['packedWeightGradient: inputs too short', () => ws.packedWeightGradient(new Float32Array(23), 2, packed(), dims, 0), /inputs has 23 values, 2 internal nodes need 24/],
    ['packedWeightGradient: a fractional node count', () => ws.packedWeightGradient(new Float32Array(24), 1.5, packed(), dims, 0), /internal must be a non-negative integer/],
    ['packedWeightGradient: a negative node count', () => ws.packedWeightGradient(new Float32Array(24), -1, packed(), dims, 0), /internal must be a non-negative integer/],
    ['packedWeightGradient: a node count past int32', () => ws.packedWeightGradient(new Float32Array(24), 2 ** 31, packed(), dims, 0), /internal must be a non-negative integer/],
    ['packedWeightGradient: a part past the last', () => ws.packedWeightGradient(new Float32Array(24), 2, packed(), dims, weightGradientParts()), /part must be an integer in \[0, \d+\)/],
    ['packedWeightGradient: a fractional part', () => ws.packedWeightGradient(new Float32Array(24), 2, packed(), dims, 0.5), /part must be an integer/],
    ['packedWeightGradient: a float64 output', () => ws.packedWeightGradient(new Float32Array(24), 2, new Float64Array(packed().length) as any, dims, 0), /packed must be a Float32Array/],
    ['packedWeightGradient: an output of the wrong length', () => ws.packedWeightGradient(new Float32Array(24), 2, new Float32Array(5), dims, 0), /packed has 5 values, dims need 176/],
    ['packedWeightGradient: inputs inside the output', () => {
      const p = packed();
      return ws.packedWeightGradient(p.subarray(0, 24), 2, p, dims, 0);
    }, /inputs and packed must not share memory/],
    ['packedWeightGradientSize with dim 0', () => native().packedWeightGradientSize(0), /dim must be an integer in \[1, 512\]/],
    ['unpackWeightGradients: no packed gradients', () => native().unpackWeightGradients([], grad(), dims, 0, 5), /at least one packed weight gradient/],
    ['unpackWeightGradients: packed not an array', () => native().unpackWeightGradients(packed() as any, grad(), dims, 0, 5), /packed must be an array/],
    ['unpackWeightGradients: a packed gradient of the wrong length', () => native().unpackWeightGradients([packed(), new Float32Array(175)], grad(), dims, 0, 5), /packed\[1\] has 175 values, dims need 176/],
    ['unpackWeightGradients: a unit past the last', () => native().unpackWeightGradients([packed()], grad(), dims, 0, 6), /first and end must be integers in \[0, 5\]/],
    ['unpackWeightGradients: first after end', () => native().unpackWeightGradients([packed()], grad(), dims, 2, 1), /first must not be after end/],
    ['unpackWeightGradients: grad of the wrong length', () => native().unpackWeightGradients([packed()], new Float32Array(9), dims, 0, 5), /grad has 9 values/],
    ['unpackWeightGradients: a packed gradient inside grad', () => {
      const g = grad();
      return native().unpackWeightGradients([g.subarray(0, 176)], g, dims, 0, 5);
    }, /packed\[0\] shares memory with a buffer the call writes/],
    ['adagradPackedStep: too few arguments', () => (native().adagradPackedStep as any)(model.params.slice(), grad(), [packed()], dims, 0, 5), /takes 11 arguments/],
    ['adagradPackedStep: packed not an array', () => native().adagradPackedStep(model.params.slice(), grad(), packed() as any, dims, 0, 5, 0, 0, 1, 0.1, 1e-3), /packed must be an array/],
    ['adagradPackedStep: no packed gradients', () => native().adagradPackedStep(model.params.slice(), grad(), [], dims, 0, 5, 0, 0, 1, 0.1, 1e-3), /at least one packed weight gradient/],
    ['adagradPackedStep: a unit past the last', () => native().adagradPackedStep(model.params.slice(), grad(), [packed()], dims, 0, 6, 0, 0, 1, 0.1, 1e-3), /first and end must be integers in \[0, 5\]/],
    ['adagradPackedStep: first after end', () => native().adagradPackedStep(model.params.slice(), grad(), [packed()], dims, 3, 2, 0, 0, 1, 0.1, 1e-3), /first must not be after end/],
    ['adagradPackedStep: a λ that is not a number', () => native().adagradPackedStep(model.params.slice(), grad(), [packed()], dims, 0, 5, '1' as any, 0, 1, 0.1, 1e-3), /must be numbers/],
    ['adagradPackedStep: history too short', () => native().adagradPackedStep(model.params.slice(), new Float32Array(3), [packed()], dims, 0, 5, 0, 0, 1, 0.1, 1e-3), /history has 3 values/],
    ['adagradPackedStep: history inside params', () => {
      const p = model.params.slice();
      return native().adagradPackedStep(p, p, [packed()], dims, 0, 5, 0, 0, 1, 0.1, 1e-3);
    }, /params and history must not share memory/],
    ['adagradPackedStep: a packed gradient of the wrong length', () => native().adagradPackedStep(model.params.slice(), grad(), [new Float32Array(5)], dims, 0, 5, 0, 0, 1, 0.1, 1e-3), /packed\[0\] has 5 values/],
    ['adagradPackedStep: a packed gradient inside history', () => {
      const h = grad();
      return native().adagradPackedStep(model.params.slice(), h, [h.subarray(0, 176)], dims, 0, 5, 0, 0, 1, 0.1, 1e-3);
    }, /packed\[0\] shares memory with a buffer the call writes/],
    ['shards: a bad schedule among good ones', () => {
      const bad = schedule();
      bad.word[0] = 99;
      return ws.forwardBackwardShards(model.params, [grad(), grad()], dims, [schedule(), bad]);
    }, /word id 99/],
    ['adagradStep: ranges of odd length', () => native().adagradStep(model.params.slice(), new Float32Array(model.params.length), [grad()], Int32Array.of(0), new Float32Array(0), 1, 0.1, 1e-3), /\[start, end\) pairs/],
    ['adagradStep: a range past the end', () => native().adagradStep(model.params.slice(), new Float32Array(model.params.length), [grad()], Int32Array.of(5, model.params.length + 1), Float32Array.of(0), 1, 0.1, 1e-3), /not inside params/],
    ['adagradStep: history of the wrong length', () => native().adagradStep(model.params.slice(), new Float32Array(3), [grad()], Int32Array.of(0, 1), Float32Array.of(0), 1, 0.1, 1e-3), /history must have as many values/],
    ['adagradStep: no gradients', () => native().adagradStep(model.params.slice(), new Float32Array(model.params.length), [], Int32Array.of(0, 1), Float32Array.of(0), 1, 0.1, 1e-3), /at least one gradient/],
  ];
  for (const [name, call, message] of cases) {
    it(name, () => {
      expect(call).toThrow(message);
    });
  }

  it('a detached parameter buffer is a length error, not a crash', () => {
    const params = model.params.slice();
    structuredClone(params.buffer, { transfer: [params.buffer] });
    expect(() => ws.forward(params, dims, schedule())).toThrow(/params has 0 values/);
  });

  it('parameters in a SharedArrayBuffer are read in place', () => {
    const shared = new Float32Array(new SharedArrayBuffer(model.params.byteLength));
    shared.set(model.params);
    expect(ws.forward(shared, dims, schedule())).toBeCloseTo(ws.forward(model.params, dims, schedule()), 6);
  });

  it('a schedule sharing memory with the gradient it writes is read as it was at the call', () => {
    // The schedule's integers are copied before they are checked: here label
    // sits on the bias gradient, which the backward pass writes while it still
    // walks the nodes.
    const plain = grad();
    const expected = ws.forwardBackward(model.params, plain, dims, schedule());
    const g = grad();
    const bsOffset = model.layout.offsets.bs;
    const s = schedule();
    const n = s.label.length;
    const aliased = new Int32Array(g.buffer, 4 * (bsOffset - n + 1), n);
    aliased.set(s.label);
    const loss = ws.forwardBackward(model.params, g, dims, { ...s, label: aliased });
    expect(loss).toBe(expected);
    // Away from the aliased slots, the gradient is the plain one.
    expect(Array.from(g.subarray(0, bsOffset - n + 1))).toEqual(Array.from(plain.subarray(0, bsOffset - n + 1)));
  });

  it('a getter that rewrites the schedule after it was read changes nothing', () => {
    // `dropout` and `weight` are read after the index arrays were checked: a
    // getter there corrupting a child index must not reach the math.
    const expected = ws.forwardBackward(model.params, grad(), dims, schedule());
    const s = schedule();
    const tricky = {
      ...s,
      get dropout() {
        s.left[s.left.length - 1] = 1 << 30;
        return undefined;
      },
    };
    expect(ws.forwardBackward(model.params, grad(), dims, tricky)).toBe(expected);
    expect(s.left[s.left.length - 1]).toBe(1 << 30);
  });

  it('a getter that detaches a buffer while the arguments are read gets an error, not a dangling pointer', () => {
    // Raw pointers are taken only after every argument has been read.
    const detach = (a: Float32Array) => structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] });
    const params = model.params.slice();
    const shards = [grad(), grad()];
    const second = shards[1];
    Object.defineProperty(shards, 1, { get: () => (detach(params), second) });
    expect(() => ws.forwardBackwardShards(params, shards, dims, [schedule(), schedule()])).toThrow(/params has 0 values/);
    const stepParams = model.params.slice();
    const stepGrads = [grad()];
    const first = stepGrads[0];
    Object.defineProperty(stepGrads, 0, { get: () => (detach(stepParams), first) });
    const history = new Float32Array(model.params.length);
    expect(() => native().adagradStep(stepParams, history, stepGrads, Int32Array.of(0, 1), Float32Array.of(0), 1, 0.1, 1e-3)).toThrow(
      /history must have as many values as params/,
    );
    // forward and forwardBackward: a getter on dims or on the schedule.
    const forwardParams = model.params.slice();
    const trickyDims = { ...dims, get leafTanh() { detach(forwardParams); return dims.leafTanh; } };
    expect(() => ws.forward(forwardParams, trickyDims, schedule())).toThrow(/params has 0 values, dims need/);
    const target = grad();
    const trickySchedule = { ...schedule(), get dropout() { detach(target); return undefined; } };
    expect(() => ws.forwardBackward(model.params, target, dims, trickySchedule)).toThrow(/grad has 0 values/);
  });

  it('a schedule another thread rewrites during calls gets errors or results, never a crash', async () => {
    // A worker flips the root's label between valid and out of range; each
    // call sees one state of the array, checked on its own copy. (Reading the
    // caller's array after the check, the backward pass wrote out of bounds.)
    const s = schedule();
    const labels = new Int32Array(new SharedArrayBuffer(4 * s.label.length));
    labels.set(s.label);
    const root = s.label.length - 1;
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const flipper = new Worker(
      `const { workerData: { labels, stop, root, valid } } = require('node:worker_threads');
       for (let k = 0; Atomics.load(stop, 0) === 0; k++) {
         labels[root] = k & 1 ? 1 << 30 : valid;
         for (let spin = 0; spin < 2000; spin++) Atomics.load(stop, 0);
       }`,
      { eval: true, workerData: { labels, stop, root, valid: s.label[root] } },
    );
    await new Promise((resolve) => flipper.once('online', resolve));
    let returned = 0;
    let rejected = 0;
    const started = Date.now();
    while (Date.now() - started < 1500 || returned === 0 || rejected === 0) {
      try {
        expect(Number.isFinite(ws.forwardBackward(model.params, grad(), dims, { ...s, label: labels }))).toBe(true);
        returned++;
      } catch (e) {
        expect(String(e)).toMatch(new RegExp(`RangeError: label 1073741824 of node ${root} `));
        rejected++;
      }
      if (Date.now() - started > 20_000) break;
    }
    Atomics.store(stop, 0, 1);
    await flipper.terminate();
    expect(returned + rejected).toBeGreaterThan(10);
    expect(rejected).toBeGreaterThan(0);
  });

  it('a bad shard leaves every gradient untouched', () => {
    const good = grad();
    const other = grad();
    const bad = schedule();
    bad.left[bad.left.length - 1] = bad.left.length - 1;
    expect(() => ws.forwardBackwardShards(model.params, [good, other], dims, [schedule(), bad])).toThrow(/earlier level/);
    expect(good.every((x) => x === 0)).toBe(true);
    expect(other.every((x) => x === 0)).toBe(true);
  });

  it('forwardBackwardShards equals one forwardBackward per shard', () => {
    const [a, b] = [grad(), grad()];
    const losses = ws.forwardBackwardShards(model.params, [a, b], dims, [schedule(), schedule()]);
    const single = grad();
    const loss = ws.forwardBackward(model.params, single, dims, schedule());
    expect(losses).toEqual([loss, loss]);
    expect(Array.from(a)).toEqual(Array.from(single));
    expect(Array.from(b)).toEqual(Array.from(single));
  });

  it('prepared parameters built unit by unit, on no workspace, give the bytes of a call that prepares its own', () => {
    expect(native().preparedSize(dims.dim)).toBe((2 * 4 * 4 + 4) * 2 * 4);
    const own = grad();
    const losses = ws.forwardBackwardShards(model.params, [own], dims, [schedule()]);
    // Units 0-4 (V[0..3], then W) in two calls, the later ones first, as two pool workers might.
    const built = prepared();
    native().prepareParameters(model.params, dims, built, 2, dims.dim + 1);
    native().prepareParameters(model.params, dims, built, 0, 2);
    native().prepareParameters(model.params, dims, built, 1, 1); // an empty range writes nothing
    const given = grad();
    expect(createWorkspace().forwardBackwardShards(model.params, [given], dims, [schedule()], undefined, built)).toEqual(losses);
    expect(Array.from(given)).toEqual(Array.from(own));
    // A unit left out changes the result: the call did use `built`.
    const partial = prepared();
    native().prepareParameters(model.params, dims, partial, 0, dims.dim);
    const stale = grad();
    ws.forwardBackwardShards(model.params, [stale], dims, [schedule()], undefined, partial);
    expect(Array.from(stale)).not.toEqual(Array.from(own));
  });

  it('a deferred weight gradient, finished on another workspace, gives the same bytes', () => {
    const whole = grad();
    const loss = ws.forwardBackward(model.params, whole, dims, schedule());
    const partial = grad();
    // The schedule has 2 internal nodes: 3·d values each.
    expect(weightGradientInputSize(dims.dim, 2)).toBe(24);
    const inputs = new Float32Array(weightGradientInputSize(dims.dim, 2));
    expect(ws.forwardBackwardShards(model.params, [partial], dims, [schedule()], [inputs])).toEqual([loss]);
    const { V, W, b } = model.layout.offsets;
    // Deferred: nothing of ∂V and ∂W yet, everything else already there.
    expect(partial.subarray(V, b).every((x) => x === 0)).toBe(true);
    expect(Array.from(partial.subarray(b))).toEqual(Array.from(whole.subarray(b)));
    // The parts in reverse order, on another workspace, into a buffer holding garbage: each part writes its whole block.
    // d = 4: 4·9 triangle rows and 8 rows of c, times 4 columns.
    expect(native().packedWeightGradientSize(dims.dim)).toBe(176);
    const other = createWorkspace();
    const mine = packed().fill(7);
    for (let part = weightGradientParts() - 1; part >= 0; part--) other.packedWeightGradient(inputs, 2, mine, dims, part);
    // The units in two pieces, W's first, over garbage: they are written, not added.
    partial.fill(5, V, b);
    native().unpackWeightGradients([mine], partial, dims, 3, 5);
    native().unpackWeightGradients([mine], partial, dims, 0, 3);
    expect(Array.from(partial)).toEqual(Array.from(whole));
    expect(partial.subarray(V, W).some((x) => x !== 0)).toBe(true);
  });

  it("unpacks the sum of several shards' packed gradients, in shard order, as the sum of their gradients", () => {
    // Four shards (one with no internal nodes), deferred, then unpacked together:
    // ∂V and ∂W equal the shards' own, summed in shard order.
    const leaf: Schedule = { left: Int32Array.of(-1), right: Int32Array.of(-1), word: Int32Array.of(1), label: Int32Array.of(2), levelStart: Int32Array.of(0, 1) };
    const relabelled = (f: (label: number) => number): Schedule => ({ ...schedule(), label: Int32Array.from(schedule().label, (l) => (l < 0 ? l : f(l))) });
    const shards = [schedule(), relabelled((l) => 4 - l), leaf, relabelled((l) => (l + 2) % 5)];
    const own = shards.map((s) => {
      const g = grad();
      ws.forwardBackward(model.params, g, dims, s);
      return g;
    });
    const packs = shards.map((s) => {
      const inputs = new Float32Array(weightGradientInputSize(dims.dim, 2));
      const internal = s.left.length - s.levelStart[1];
      ws.forwardBackwardShards(model.params, [grad()], dims, [s], [inputs]);
      const p = packed().fill(3);
      for (let part = 0; part < weightGradientParts(); part++) ws.packedWeightGradient(inputs, internal, p, dims, part);
      return p;
    });
    const together = grad();
    native().unpackWeightGradients(packs, together, dims, 0, dims.dim + 1);
    const { V, b } = model.layout.offsets;
    // Float32 sums, in order (fround of a double sum of two floats is the float sum).
    const inOrder = (g: Float32Array[], i: number) => g.reduce((sum, x) => Math.fround(sum + x[i]), 0);
    for (let i = V; i < b; i++) expect(together[i], `index ${i}`).toBe(inOrder(own, i));
    expect(own[2].subarray(V, b).every((x) => x === 0)).toBe(true);
    // The order shows in the bytes: summed the other way round, some values differ.
    const reversed = [...own].reverse();
    expect(Array.from({ length: b - V }, (_, j) => V + j).some((i) => inOrder(reversed, i) !== inOrder(own, i))).toBe(true);
  });

  it('adagradPackedStep is adagradStep on the unpacked sum, byte for byte, and flags a non-finite gradient', () => {
    // Two shards' packed weight gradients (deferred, as the pool does it), and their sum unpacked into a buffer.
    const packs = [schedule(), { ...schedule(), label: Int32Array.from(schedule().label, (l) => (l < 0 ? l : 4 - l)) }].map((s) => {
      const inputs = new Float32Array(weightGradientInputSize(dims.dim, 2));
      ws.forwardBackwardShards(model.params, [grad()], dims, [s], [inputs]);
      const p = packed();
      for (let part = 0; part < weightGradientParts(); part++) ws.packedWeightGradient(inputs, 2, p, dims, part);
      return p;
    });
    const unpacked = grad();
    native().unpackWeightGradients(packs, unpacked, dims, 0, dims.dim + 1);
    const { V, W, b } = model.layout.offsets;
    const [lambdaV, lambdaW] = [0.3, 1e-3];
    const history = grad().fill(0.5);
    const [params1, history1] = [model.params.slice(), history.slice()];
    expect(native().adagradStep(params1, history1, [unpacked], Int32Array.of(V, W, W, b), Float32Array.of(lambdaV, lambdaW), 1 / 3, 0.01, 1e-3)).toBe(true);
    // In two calls, W first: the units are independent.
    const [params2, history2] = [model.params.slice(), history.slice()];
    expect(native().adagradPackedStep(params2, history2, packs, dims, dims.dim, dims.dim + 1, lambdaV, lambdaW, 1 / 3, 0.01, 1e-3)).toBe(true);
    expect(native().adagradPackedStep(params2, history2, packs, dims, 0, dims.dim, lambdaV, lambdaW, 1 / 3, 0.01, 1e-3)).toBe(true);
    expect(Buffer.from(params2.buffer).equals(Buffer.from(params1.buffer))).toBe(true);
    expect(Buffer.from(history2.buffer).equals(Buffer.from(history1.buffer))).toBe(true);
    expect(params2.subarray(V, b).some((x, i) => x !== model.params[V + i])).toBe(true);
    packs[1][7] = NaN;
    expect(native().adagradPackedStep(params2, history2, packs, dims, 0, 1, lambdaV, lambdaW, 1 / 3, 0.01, 1e-3)).toBe(false);
  });

  it('still computes after all those errors', () => {
    expect(ws.forwardBackward(model.params, grad(), dims, schedule())).toBeGreaterThan(0);
  });
});

describe('worker threads', () => {
  it('load the addon and compute the same loss as the main thread, several at once', async () => {
    const expected = createWorkspace().forward(model.params, dims, schedule());
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      const { createWorkspace } = require(workerData.lib);
      const ws = createWorkspace();
      parentPort.postMessage(ws.forward(workerData.params, workerData.dims, workerData.schedule));`;
    const run = () =>
      new Promise<number>((resolve, reject) => {
        const worker = new Worker(code, {
          eval: true,
          workerData: { lib: path.resolve(__dirname, '../lib/native.js'), params: model.params, dims, schedule: schedule() },
        });
        worker.once('message', resolve);
        worker.once('error', reject);
      });
    const losses = await Promise.all([run(), run(), run()]);
    for (const loss of losses) expect(loss).toBe(expected);
  });
});
