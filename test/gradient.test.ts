import { describe, expect, it } from 'vitest';
import { compileBatch, type CompiledBatch } from '../src/batch';
import { gradientCheck, lossAndGradient } from '../src/gradient';
import { createWorkspace, nativeDims } from '../src/native';
import { Model, TENSOR_NAMES, type LeafActivation } from '../src/model';
import { Random } from '../src/random';
import { readTrees } from '../src/tree';
import { Vocabulary } from '../src/vocab';
import { HAVE_SST, SST_DIR, randomTrees } from './helpers';
import * as path from 'node:path';

const WORDS = ['*UNK*', 'good', 'bad', 'not', 'very', 'movie', 'plot', 'but'];

/** A model whose parameters are pushed away from initialisation, so no gradient term is trivially small. */
function perturbedModel(vocab: Vocabulary, dim: number, leaf: LeafActivation, seed: number, scale = 0.3): Model {
  const model = Model.create(vocab, { dim, leaf, seed });
  const rng = new Random(seed + 1000);
  for (let i = 0; i < model.params.length; i++) model.params[i] += rng.symmetric(scale);
  return model;
}

describe('finite-difference gradient check (float64)', () => {
  for (const leaf of ['identity', 'tanh'] as const) {
    for (const dim of [1, 3, 6]) {
      it(`random trees, d = ${dim}, leaf = ${leaf}: every group within 1e-6`, () => {
        // Words outside the vocabulary exercise the *UNK* row.
        const trees = randomTrees(dim * 10 + (leaf === 'tanh' ? 1 : 0), 6, [...WORDS, 'unseen', 'other']);
        const model = perturbedModel(new Vocabulary(WORDS), dim, leaf, 7 + dim);
        const checks = gradientCheck(model, trees, { samples: 400 });
        expect(checks.map((c) => c.group)).toEqual([...TENSOR_NAMES]);
        for (const c of checks) {
          expect(c.checked, c.group).toBeGreaterThan(0);
          expect(c.relativeError, `${c.group}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(1e-6);
        }
      });
    }
  }

  for (const leaf of ['identity', 'tanh'] as const) {
    it(`classifier dropout (rate 0.5), d = 4, leaf = ${leaf}: every group within 1e-6 under the fixed mask`, () => {
      const trees = randomTrees(41, 6, [...WORDS, 'unseen']);
      const model = perturbedModel(new Vocabulary(WORDS), 4, leaf, 3);
      const dropout = { rate: 0.5, seed: 99 };
      for (const c of gradientCheck(model, trees, { samples: 400, dropout })) {
        expect(c.relativeError, `${c.group}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(1e-6);
      }
      // The mask is real: the loss and gradient differ from the plain ones, and a mask is a function of its seed.
      const plain = lossAndGradient(model, trees, 'float64');
      const masked = lossAndGradient(model, trees, 'float64', { dropout });
      expect(masked.loss).not.toBe(plain.loss);
      expect(lossAndGradient(model, trees, 'float64', { dropout }).loss).toBe(masked.loss);
      expect(lossAndGradient(model, trees, 'float64', { dropout: { rate: 0.5, seed: 100 } }).loss).not.toBe(masked.loss);
      // Rate 0 is no dropout at all.
      expect(lossAndGradient(model, trees, 'float64', { dropout: { rate: 0, seed: 99 } }).loss).toBe(plain.loss);
    });
  }

  for (const leaf of ['identity', 'tanh'] as const) {
    it(`root weight 3, d = 4, leaf = ${leaf}: every group within 1e-6, and the loss is the weighted sum`, () => {
      const trees = randomTrees(43, 6, [...WORDS, 'unseen']);
      const model = perturbedModel(new Vocabulary(WORDS), 4, leaf, 11);
      for (const c of gradientCheck(model, trees, { samples: 400, rootWeight: 3 })) {
        expect(c.relativeError, `${c.group}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(1e-6);
      }
      // The roots' own loss, from the probabilities the forward pass gives them.
      const batch = compileBatch(trees, model.vocab);
      const probs = new Float64Array(model.config.classes * batch.left.length);
      createWorkspace().forward(Float64Array.from(model.params), nativeDims(model), batch, probs);
      let rootLoss = 0;
      for (const r of batch.roots) rootLoss -= Math.log(probs[r * model.config.classes + batch.label[r]]);
      const plain = lossAndGradient(model, trees, 'float64').loss;
      expect(lossAndGradient(model, trees, 'float64', { rootWeight: 3 }).loss).toBeCloseTo(plain + 2 * rootLoss, 8);
      expect(lossAndGradient(model, trees, 'float64', { rootWeight: 0 }).loss).toBeCloseTo(plain - rootLoss, 8);
      expect(lossAndGradient(model, trees, 'float64', { rootWeight: 1 }).loss).toBe(plain);
    });
  }

  for (const leaf of ['identity', 'tanh'] as const) {
    it(`target distributions (distillation), d = 4, leaf = ${leaf}: every group within 1e-6, the loss is the cross-entropy`, () => {
      const trees = randomTrees(47, 6, [...WORDS, 'unseen']);
      const model = perturbedModel(new Vocabulary(WORDS), 4, leaf, 13);
      const C = model.config.classes;
      // Random non-negative targets, deliberately not summing to 1, so the (Σt)·y − t form of δs is checked too.
      const rng = new Random(5);
      const batch = compileBatch(trees, model.vocab); // 6 trees: the one chunk lossAndGradient compiles
      const t = Float32Array.from({ length: C * batch.left.length }, () => rng.symmetric(0.5) + 0.5);
      const only = () => t;
      for (const c of gradientCheck(model, trees, { samples: 400, target: only })) {
        expect(c.relativeError, `${c.group}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(1e-6);
      }
      const probs = new Float64Array(C * batch.left.length);
      createWorkspace().forward(Float64Array.from(model.params), nativeDims(model), batch, probs);
      let crossEntropy = 0;
      for (let n = 0; n < batch.left.length; n++) for (let i = 0; i < C; i++) crossEntropy -= t[n * C + i] * Math.log(probs[n * C + i]);
      expect(lossAndGradient(model, trees, 'float64', { target: only }).loss).toBeCloseTo(crossEntropy, 8);
      // One-hot targets are the labels themselves, to the bit.
      const oneHot = (b: CompiledBatch) => {
        const h = new Float32Array(C * b.left.length);
        b.label.forEach((label, n) => label >= 0 && (h[n * C + label] = 1));
        return h;
      };
      const plain = lossAndGradient(model, trees, 'float64');
      const viaTargets = lossAndGradient(model, trees, 'float64', { target: oneHot });
      expect(viaTargets.loss).toBe(plain.loss);
      expect(viaTargets.gradient).toEqual(plain.gradient);
    });
  }

  for (const leaf of ['identity', 'tanh'] as const) {
    it(`polarity term (β 0.75; at roots only; with root weight 2 and targets), d = 4, leaf = ${leaf}: every group within 1e-6, the loss is −log of the gold side`, () => {
      const trees = randomTrees(53, 6, [...WORDS, 'unseen']);
      const model = perturbedModel(new Vocabulary(WORDS), 4, leaf, 17);
      const C = model.config.classes;
      const batch = compileBatch(trees, model.vocab);
      expect(new Set(batch.label)).toEqual(new Set([0, 1, 2, 3, 4])); // both sides and neutral nodes present
      const rng = new Random(9);
      const t = Float32Array.from({ length: C * batch.left.length }, () => rng.symmetric(0.5) + 0.5);
      // Weights exact in float32: the schedule carries them per node as float32, like Schedule.weight.
      const cases = [
        { polarityWeight: 0.75 },
        { polarityWeight: 0, rootPolarityWeight: 1.25 },
        { polarityWeight: 0.75, rootPolarityWeight: 1.25, rootWeight: 2, target: () => t },
      ];
      for (const terms of cases) {
        for (const c of gradientCheck(model, trees, { samples: 400, ...terms })) {
          expect(c.relativeError, `${c.group} ${Object.keys(terms)}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(1e-6);
        }
      }
      const probs = new Float64Array(C * batch.left.length);
      createWorkspace().forward(Float64Array.from(model.params), nativeDims(model), batch, probs);
      const isRoot = new Set(batch.roots);
      let phrases = 0;
      let roots = 0;
      batch.label.forEach((label, n) => {
        if (label < 0 || label === 2) return;
        const side = label < 2 ? probs[n * C] + probs[n * C + 1] : probs[n * C + 3] + probs[n * C + 4];
        if (isRoot.has(n)) roots -= Math.log(side);
        else phrases -= Math.log(side);
      });
      expect(roots).toBeGreaterThan(0);
      const plain = lossAndGradient(model, trees, 'float64');
      expect(lossAndGradient(model, trees, 'float64', { polarityWeight: 0.75 }).loss).toBeCloseTo(plain.loss + 0.75 * (phrases + roots), 8);
      expect(lossAndGradient(model, trees, 'float64', { polarityWeight: 0.75, rootPolarityWeight: 1.25 }).loss).toBeCloseTo(plain.loss + 0.75 * phrases + 1.25 * roots, 8);
      expect(lossAndGradient(model, trees, 'float64', { polarityWeight: 0, rootPolarityWeight: 1.25 }).loss).toBeCloseTo(plain.loss + 1.25 * roots, 8);
      // β = 0 is no term at all, to the bit.
      const zero = lossAndGradient(model, trees, 'float64', { polarityWeight: 0 });
      expect(zero.loss).toBe(plain.loss);
      expect(zero.gradient).toEqual(plain.gradient);
    });
  }

  it('a polarity side that underflows in float32 still gives a finite loss and gradient', () => {
    const trees = randomTrees(59, 4, WORDS);
    const model = perturbedModel(new Vocabulary(WORDS), 3, 'identity', 19);
    // Class 2's bias far above the rest: y of both sides is ~e^-200, below float32's range.
    model.tensors.bs[2] = 200;
    const { loss, gradient } = lossAndGradient(model, trees, 'float32', { polarityWeight: 1 });
    expect(Number.isFinite(loss)).toBe(true);
    expect(gradient.every(Number.isFinite)).toBe(true);
    const reference = lossAndGradient(model, trees, 'float64', { polarityWeight: 1 }).loss;
    expect(loss).toBeCloseTo(reference, 0);
  });

  it('refuses a check of no coordinates, a step that is not a positive number and an unknown precision', () => {
    const trees = randomTrees(2, 3, WORDS);
    const model = perturbedModel(new Vocabulary(WORDS), 3, 'identity', 5);
    expect(() => gradientCheck(model, trees, { samples: 0 })).toThrow(/samples must be a positive integer, got 0/);
    expect(() => gradientCheck(model, trees, { samples: 2.5 })).toThrow(/samples must be a positive integer, got 2.5/);
    expect(() => gradientCheck(model, trees, { step: -1e-3 })).toThrow(/step must be a finite number > 0, got -0.001/);
    expect(() => gradientCheck(model, trees, { step: NaN })).toThrow(/step must be a finite number > 0, got NaN/);
    expect(() => lossAndGradient(model, trees, 'float16' as 'float32')).toThrow(/precision must be "float32" or "float64", got "float16"/);
  });

  it('fails a gradient that is wrong in one coordinate (the check can fail)', () => {
    const trees = randomTrees(5, 4, WORDS);
    const model = perturbedModel(new Vocabulary(WORDS), 3, 'identity', 5);
    const { gradient, tensors } = lossAndGradient(model, trees, 'float64');
    let k = 0;
    while (Math.abs(tensors.W[k]) < 1e-2) k++;
    gradient[model.layout.offsets.W + k] *= 1.01;
    const checks = gradientCheck(model, trees, { samples: 1000, analytic: gradient });
    for (const c of checks) {
      if (c.group === 'W') expect(c.relativeError).toBeGreaterThan(1e-5);
      else expect(c.relativeError, c.group).toBeLessThan(1e-6);
    }
  });

  it.skipIf(!HAVE_SST)(`SST trees${HAVE_SST ? '' : ' (skipped: ../shared/data/sst is absent)'}, d = 25: every group within 1e-6`, () => {
    const trees = readTrees(path.join(SST_DIR, 'dev.txt')).slice(0, 8);
    const vocab = Vocabulary.fromTrees(trees);
    for (const leaf of ['identity', 'tanh'] as const) {
      const model = perturbedModel(vocab, 25, leaf, 11, 0.05);
      for (const c of gradientCheck(model, trees, { samples: 150 })) {
        expect(c.relativeError, `${leaf} ${c.group}: ${JSON.stringify(c)}`).toBeLessThanOrEqual(1e-6);
      }
    }
  });
});

describe('float32 against float64', () => {
  it.skipIf(!HAVE_SST)(`SST trees${HAVE_SST ? '' : ' (skipped: ../shared/data/sst is absent)'}: every group within 1e-4`, () => {
    const trees = readTrees(path.join(SST_DIR, 'train.txt')).slice(0, 300);
    const vocab = Vocabulary.fromTrees(trees);
    const model = Model.create(vocab, { dim: 25, seed: 3 });
    const g32 = lossAndGradient(model, trees, 'float32');
    const g64 = lossAndGradient(model, trees, 'float64');
    expect(Math.abs(g32.loss - g64.loss) / g64.loss).toBeLessThan(1e-5);
    for (const name of TENSOR_NAMES) {
      let diff2 = 0;
      let ref2 = 0;
      const a = g32.tensors[name];
      const b = g64.tensors[name];
      for (let i = 0; i < b.length; i++) {
        diff2 += (a[i] - b[i]) ** 2;
        ref2 += b[i] ** 2;
      }
      expect(ref2, name).toBeGreaterThan(0);
      expect(Math.sqrt(diff2 / ref2), name).toBeLessThanOrEqual(1e-4);
    }
  });
});
