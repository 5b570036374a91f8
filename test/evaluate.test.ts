import { describe, it, expect } from 'vitest';
import { binarySplit, computeMetrics, evaluate, evaluateEnsemble, formatMetrics, type Metrics } from '../src/evaluate';
import { lossAndGradient } from '../src/gradient';
import { ensembleProbabilities, predict, predictEnsemble } from '../src/predict';
import { Model } from '../src/model';
import { TreeTable } from '../src/batch';
import { countNodes, parseTrees, type TreeNode } from '../src/tree';
import { Vocabulary } from '../src/vocab';
import { randomTrees } from './helpers';

/**
 * Eight nodes, C = 5, chosen so every rule shows up once:
 *   n  gold root probs                       argmax  binary (neg vs pos mass)
 *   0   1    .   [.3 .3 .4 0 0]              2 ✗     .6 vs 0   → neg ✓ (argmax neutral, binary negative)
 *   1   3    R   [.1 .1 .1 .6 .1]            3 ✓     .2 vs .7  → pos ✓
 *   2   2    .   [.1 .2 .5 .1 .1]            2 ✓     neutral gold: excluded
 *   3   4    R   [.5 0 0 .25 .25]            0 ✗     .5 vs .5  → tie → neg ✗
 *   4  −1    .   [0 0 0 0 1]                 unlabelled: excluded everywhere
 *   5   0    R   [.2 .1 .1 .3 .3]            3 ✗ (first of the tie 3/4)   .3 vs .6 → pos ✗
 *   6   3    .   [.05 .05 .1 .4 .4]          3 ✓ (first of the tie 3/4)   pos ✓
 *   7   2    R   [.4 .1 .3 .1 .1]            0 ✗     neutral gold: excluded
 */
const GOLD = [1, 3, 2, 4, -1, 0, 3, 2];
const ROOT = [0, 1, 0, 1, 0, 1, 0, 1];
const PROBS = [
  [0.3, 0.3, 0.4, 0, 0],
  [0.1, 0.1, 0.1, 0.6, 0.1],
  [0.1, 0.2, 0.5, 0.1, 0.1],
  [0.5, 0, 0, 0.25, 0.25],
  [0, 0, 0, 0, 1],
  [0.2, 0.1, 0.1, 0.3, 0.3],
  [0.05, 0.05, 0.1, 0.4, 0.4],
  [0.4, 0.1, 0.3, 0.1, 0.1],
];

function handMade(probsType: 'f32' | 'f64' = 'f64'): Metrics {
  const flat = PROBS.flat();
  return computeMetrics({
    classes: 5,
    gold: Int32Array.from(GOLD),
    probs: probsType === 'f32' ? Float32Array.from(flat) : Float64Array.from(flat),
    isRoot: Uint8Array.from(ROOT),
    lossSum: 3.5,
  });
}

function zeros(n: number): number[][] {
  return Array.from({ length: n }, () => new Array<number>(n).fill(0));
}

describe('computeMetrics on hand-made probabilities', () => {
  const m = handMade();

  it('counts labelled nodes and labelled roots only', () => {
    expect(m.nodes).toBe(7); // all but node 4
    expect(m.roots).toBe(4); // nodes 1, 3, 5, 7
    expect(m.binaryNodes).toBe(5); // nodes 0, 1, 3, 5, 6: neutral gold (2, 7) and unlabelled (4) left out
    expect(m.binaryRoots).toBe(3); // roots 1, 3, 5
  });

  it('5-class accuracy from the argmax, all nodes and roots apart', () => {
    expect(m.allFine).toBeCloseTo(3 / 7, 15); // nodes 1, 2, 6
    expect(m.rootFine).toBeCloseTo(1 / 4, 15); // root 1
  });

  it('binary accuracy from probability mass: neutral gold excluded, argmax polarity ignored, tie negative', () => {
    expect(m.allBinary).toBeCloseTo(3 / 5, 15); // nodes 0, 1, 6
    expect(m.rootBinary).toBeCloseTo(1 / 3, 15); // root 1
  });

  it('mean loss per labelled node', () => {
    expect(m.loss).toBeCloseTo(3.5 / 7, 15);
  });

  it('confusion matrices [gold][predicted]', () => {
    const all = zeros(5);
    all[1][2] = 1; // n0
    all[3][3] = 2; // n1, n6
    all[2][2] = 1; // n2
    all[4][0] = 1; // n3
    all[0][3] = 1; // n5
    all[2][0] = 1; // n7
    const root = zeros(5);
    root[3][3] = 1;
    root[4][0] = 1;
    root[0][3] = 1;
    root[2][0] = 1;
    expect(m.confusion.all).toEqual(all);
    expect(m.confusion.root).toEqual(root);
  });

  it('per-class precision, recall and F1 (0 where undefined)', () => {
    const z = { precision: 0, recall: 0, f1: 0 };
    // All nodes. Class 0: gold n5, predicted n3, n7 → tp 0. Class 1: never predicted.
    // Class 2: gold n2, n7; predicted n0, n2 → P = R = 1/2. Class 3: gold n1, n6; predicted n1, n5, n6 → P 2/3, R 1, F1 0.8.
    const all = m.perClass.all;
    expect(all.map((s) => s.support)).toEqual([1, 1, 2, 2, 1]);
    expect(all[0]).toMatchObject(z);
    expect(all[1]).toMatchObject(z);
    expect(all[2].precision).toBeCloseTo(0.5, 15);
    expect(all[2].recall).toBeCloseTo(0.5, 15);
    expect(all[2].f1).toBeCloseTo(0.5, 15);
    expect(all[3].precision).toBeCloseTo(2 / 3, 15);
    expect(all[3].recall).toBeCloseTo(1, 15);
    expect(all[3].f1).toBeCloseTo((2 * (2 / 3) * 1) / (2 / 3 + 1), 15);
    expect(all[3].f1).toBeCloseTo(0.8, 15);
    expect(all[4]).toMatchObject(z);
    // Roots. Class 3: gold n1; predicted n1, n5 → P 1/2, R 1, F1 2/3. Class 1 has no support and no predictions.
    const root = m.perClass.root;
    expect(root.map((s) => s.support)).toEqual([1, 0, 1, 1, 1]);
    expect(root[3].precision).toBeCloseTo(0.5, 15);
    expect(root[3].recall).toBeCloseTo(1, 15);
    expect(root[3].f1).toBeCloseTo(2 / 3, 15);
    for (const c of [0, 1, 2, 4]) expect(root[c], `root class ${c}`).toMatchObject(z);
  });

  it('gives the same answer from float32 probabilities', () => {
    expect(handMade('f32')).toEqual(m);
  });

  it('treats an unlabelled node as absent, whatever its probabilities', () => {
    const gold = Int32Array.from(GOLD);
    const probs = Float64Array.from(PROBS.flat());
    probs.set([1, 0, 0, 0, 0], 4 * 5); // node 4 now predicts 0 instead of 4
    const other = computeMetrics({ classes: 5, gold, probs, isRoot: Uint8Array.from(ROOT), lossSum: 3.5 });
    expect(other).toEqual(m);
  });
});

describe('computeMetrics edge cases', () => {
  it('empty input: zeros, no NaN', () => {
    const m = computeMetrics({ classes: 5, gold: new Int32Array(0), probs: new Float32Array(0), isRoot: new Uint8Array(0), lossSum: 0 });
    expect(m).toMatchObject({ loss: 0, nodes: 0, roots: 0, allFine: 0, rootFine: 0, allBinary: 0, rootBinary: 0, binaryNodes: 0, binaryRoots: 0 });
    expect(m.confusion.all).toEqual(zeros(5));
    expect(m.perClass.root).toEqual(Array.from({ length: 5 }, () => ({ precision: 0, recall: 0, f1: 0, support: 0 })));
    expect(JSON.stringify(m)).not.toMatch(/null|NaN/);
  });

  it('only unlabelled or only neutral nodes: zeros, no NaN', () => {
    const probs = Float32Array.from([0.2, 0.2, 0.2, 0.2, 0.2, 0.1, 0.1, 0.6, 0.1, 0.1]);
    const m = computeMetrics({ classes: 5, gold: Int32Array.from([-1, 2]), probs, isRoot: Uint8Array.from([0, 1]), lossSum: 0.5 });
    expect(m).toMatchObject({ nodes: 1, roots: 1, allFine: 1, rootFine: 1, binaryNodes: 0, binaryRoots: 0, allBinary: 0, rootBinary: 0, loss: 0.5 });
  });

  it('neutral class: middle for odd C, none for even C', () => {
    expect(binarySplit(5)).toEqual({ lo: 2, hi: 3, neutral: 2 });
    expect(binarySplit(3)).toEqual({ lo: 1, hi: 2, neutral: 1 });
    expect(binarySplit(4)).toEqual({ lo: 2, hi: 2, neutral: undefined });
    expect(binarySplit(2)).toEqual({ lo: 1, hi: 1, neutral: undefined });
  });

  it('even C: halves split at C/2 and nothing is excluded', () => {
    // C = 4. gold 1 (negative): mass .3 vs .7 → positive ✗. gold 2 (positive): .8 vs .2 → negative ✗.
    // gold 2: .1 vs .9 → positive ✓. gold 0: .6 vs .4 → negative ✓.
    const probs = Float64Array.from([0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.1, 0.1, 0.05, 0.05, 0.5, 0.4, 0.3, 0.3, 0.2, 0.2]);
    const m = computeMetrics({ classes: 4, gold: Int32Array.from([1, 2, 2, 0]), probs, isRoot: Uint8Array.from([1, 1, 0, 0]), lossSum: 0 });
    expect(m.binaryNodes).toBe(4);
    expect(m.binaryRoots).toBe(2);
    expect(m.allBinary).toBeCloseTo(2 / 4, 15);
    expect(m.rootBinary).toBe(0);
    // Argmax: 3 ✗, 0 ✗ (first of the tie 0/1), 2 ✓, 0 ✓.
    expect(m.allFine).toBeCloseTo(2 / 4, 15);
  });

  it('C = 2: binary accuracy is plain accuracy', () => {
    const probs = Float64Array.from([0.7, 0.3, 0.4, 0.6, 0.2, 0.8]);
    const m = computeMetrics({ classes: 2, gold: Int32Array.from([0, 0, 1]), probs, isRoot: Uint8Array.from([0, 0, 1]), lossSum: 0 });
    expect(m.allFine).toBeCloseTo(2 / 3, 15);
    expect(m.allBinary).toBe(m.allFine);
    expect(m.rootBinary).toBe(1);
  });

  it('rejects inconsistent input', () => {
    const gold = Int32Array.from([0, 1]);
    const isRoot = Uint8Array.from([0, 1]);
    expect(() => computeMetrics({ classes: 5, gold, probs: new Float32Array(9), isRoot, lossSum: 0 })).toThrow(/probs has 9 values, needs .* 10/);
    expect(() => computeMetrics({ classes: 5, gold, probs: new Float32Array(10), isRoot: new Uint8Array(3), lossSum: 0 })).toThrow(/isRoot/);
    expect(() => computeMetrics({ classes: 5, gold: Int32Array.from([0, 5]), probs: new Float32Array(10), isRoot, lossSum: 0 })).toThrow(/gold label 5/);
    expect(() => computeMetrics({ classes: 5, gold: Int32Array.from([-2, 0]), probs: new Float32Array(10), isRoot, lossSum: 0 })).toThrow(/gold label -2/);
    expect(() => computeMetrics({ classes: 1, gold: new Int32Array(0), probs: new Float32Array(0), isRoot: new Uint8Array(0), lossSum: 0 })).toThrow(/classes/);
  });
});

describe('formatMetrics', () => {
  it('reports the four accuracies with counts, the loss, both confusion matrices and the per-class table', () => {
    const text = formatMetrics(handMade(), 'dev');
    expect(text.split('\n')[0]).toBe('dev');
    expect(text).toMatch(/all nodes, fine\s+42\.86 %\s+\(3 \/ 7\)/);
    expect(text).toMatch(/roots, fine\s+25\.00 %\s+\(1 \/ 4\)/);
    expect(text).toMatch(/all nodes, binary\s+60\.00 %\s+\(3 \/ 5\)/);
    expect(text).toMatch(/roots, binary\s+33\.33 %\s+\(1 \/ 3\)/);
    expect(text).toMatch(/mean loss\s+0\.5000/);
    expect(text).toMatch(/confusion, all nodes/);
    expect(text).toMatch(/confusion, roots/);
    // Row of gold class 3 in the all-node matrix: predicted 3 twice.
    expect(text).toMatch(/^\s+3\s+0\s+0\s+0\s+2\s+0$/m);
    // Class 3 of the per-class table: P .667, R 1, F1 .8, support 2 | root P .5, R 1, F1 .667, support 1.
    expect(text).toMatch(/^\s+3\s+0\.667\s+1\.000\s+0\.800\s+2 \|\s+0\.500\s+1\.000\s+0\.667\s+1$/m);
  });

  it('has no title line without a title', () => {
    expect(formatMetrics(handMade()).split('\n')[0]).toMatch(/all nodes, fine/);
  });
});

describe('evaluate (native forward pass)', () => {
  const TEXT = [
    '(3 (2 good) (3 (1 bad) (3 movie)))',
    '(1 (1 bad) (2 plot))',
    '(4 good)',
    '(3 (3 (4 good) (2 and)) (0 bad))',
  ].join('\n');
  const trees = parseTrees(TEXT);
  const vocab = () => new Vocabulary(['*UNK*', 'good', 'bad']);

  function labels(tree: TreeNode): number[] {
    return 'word' in tree ? [tree.label] : [tree.label, ...labels(tree.left), ...labels(tree.right)];
  }

  it('counts every node and tree; accuracies are fractions; loss is the mean of the native loss', () => {
    const model = Model.create(vocab(), { dim: 3, seed: 1 });
    const m = evaluate(model, trees);
    const nodes = trees.reduce((s, t) => s + countNodes(t).leaves + countNodes(t).internal, 0);
    expect(nodes).toBe(14);
    expect(m.nodes).toBe(nodes);
    expect(m.roots).toBe(trees.length);
    for (const acc of [m.allFine, m.rootFine, m.allBinary, m.rootBinary]) {
      expect(acc).toBeGreaterThanOrEqual(0);
      expect(acc).toBeLessThanOrEqual(1);
    }
    const expected = lossAndGradient(model, trees).loss / nodes;
    expect(Math.abs(m.loss - expected) / expected).toBeLessThan(1e-5);
    expect(m.loss).toBeGreaterThan(0);
  });

  it('a huge bias on class 3 predicts 3 everywhere', () => {
    const model = Model.create(vocab(), { dim: 3, seed: 1 });
    model.tensors.bs[3] = 50;
    const m = evaluate(model, trees);
    const all = trees.flatMap(labels);
    const rootLabels = trees.map((t) => t.label);
    const frac = (xs: number[], f: (x: number) => boolean) => xs.filter(f).length / xs.length;
    expect(m.allFine).toBeCloseTo(frac(all, (l) => l === 3), 12);
    expect(m.allFine).toBeCloseTo(5 / 14, 12); // by hand: three 3s in the first tree, two in the last
    expect(m.rootFine).toBeCloseTo(frac(rootLabels, (l) => l === 3), 12);
    expect(m.rootFine).toBeCloseTo(2 / 4, 12);
    // Every node leans positive, so binary accuracy is the positive share of the non-neutral gold.
    expect(m.binaryNodes).toBe(11);
    expect(m.allBinary).toBeCloseTo(7 / 11, 12);
    expect(m.binaryRoots).toBe(4);
    expect(m.rootBinary).toBeCloseTo(3 / 4, 12);
    for (let g = 0; g < 5; g++) {
      for (let p = 0; p < 5; p++) {
        if (p !== 3) expect(m.confusion.all[g][p], `[${g}][${p}]`).toBe(0);
      }
    }
    expect(m.confusion.all.map((row) => row[3])).toEqual([1, 3, 3, 5, 2]);
  });

  it('no trees: zeros, no NaN', () => {
    const m = evaluate(Model.create(vocab(), { dim: 3, seed: 1 }), []);
    expect(m).toMatchObject({ nodes: 0, roots: 0, loss: 0, allFine: 0, rootFine: 0, allBinary: 0, rootBinary: 0 });
  });

  it('more than one native call: the same as evaluating the chunks apart and adding up', () => {
    const words = ['*UNK*', 'good', 'bad', 'not', 'very', 'movie', 'plot', 'but'];
    const many = randomTrees(3, 700, words, 5, 6);
    const model = Model.create(new Vocabulary(words), { dim: 4, seed: 2 });
    const whole = evaluate(model, many);
    const parts = [evaluate(model, many.slice(0, 512)), evaluate(model, many.slice(512))];
    expect(whole.roots).toBe(700);
    expect(whole.nodes).toBe(parts[0].nodes + parts[1].nodes);
    for (const key of ['all', 'root'] as const) {
      const sum = parts[0].confusion[key].map((row, g) => row.map((v, p) => v + parts[1].confusion[key][g][p]));
      expect(whole.confusion[key]).toEqual(sum);
    }
    expect(whole.binaryRoots).toBe(parts[0].binaryRoots + parts[1].binaryRoots);
    const binaryCorrect = (m: Metrics) => Math.round(m.allBinary * m.binaryNodes);
    expect(binaryCorrect(whole)).toBe(binaryCorrect(parts[0]) + binaryCorrect(parts[1]));
    const lossSum = parts[0].loss * parts[0].nodes + parts[1].loss * parts[1].nodes;
    expect(whole.loss).toBeCloseTo(lossSum / whole.nodes, 10);
  });
});

describe('evaluateEnsemble', () => {
  const words = ['*UNK*', 'good', 'bad', 'not', 'very', 'movie', 'plot', 'but'];
  const many = randomTrees(7, 40, words, 5, 6);
  const vocab = new Vocabulary(words);

  it('one model: exactly evaluate', () => {
    const model = Model.create(vocab, { dim: 4, seed: 2 });
    expect(evaluateEnsemble([model], many)).toEqual(evaluate(model, many));
  });

  it('a model twice: the same predictions, and the loss of its own probabilities', () => {
    const model = Model.create(vocab, { dim: 4, seed: 2 });
    const one = evaluate(model, many);
    const twice = evaluateEnsemble([model, model], many);
    expect(twice.confusion).toEqual(one.confusion);
    expect(twice.allBinary).toBe(one.allBinary);
    expect(twice.loss).toBeCloseTo(one.loss, 5);
  });

  it('scores the mean of the models\' probabilities, node by node', () => {
    // Different sizes and vocabularies: the second knows fewer words.
    const a = Model.create(vocab, { dim: 4, seed: 2 });
    const b = Model.create(new Vocabulary(['*UNK*', 'good', 'bad']), { dim: 6, seed: 9 });
    const got = evaluateEnsemble([a, b], many);
    const [pa, pb] = [predict(a, many), predict(b, many)];
    const gold: number[] = [];
    const probs: number[] = [];
    const isRoot: number[] = [];
    const visit = (t: TreeNode, i: number, root: boolean) => {
      gold.push(t.label);
      isRoot.push(root ? 1 : 0);
      const x = pa[i].nodes.get(t)!.probs;
      const y = pb[i].nodes.get(t)!.probs;
      probs.push(...x.map((v, c) => (v + y[c]) / 2));
      if (!('word' in t)) {
        visit(t.left, i, false);
        visit(t.right, i, false);
      }
    };
    many.forEach((t, i) => visit(t, i, true));
    let lossSum = 0;
    gold.forEach((g, n) => (lossSum -= Math.log(probs[n * 5 + g])));
    const expected = computeMetrics({ classes: 5, gold: Int32Array.from(gold), probs: Float32Array.from(probs), isRoot: Uint8Array.from(isRoot), lossSum });
    expect(got.confusion).toEqual(expected.confusion);
    expect(got.loss).toBeCloseTo(expected.loss, 5);
    expect(got.roots).toBe(40);
  });

  it('refuses no models and models with different classes', () => {
    const five = Model.create(vocab, { dim: 4, seed: 2 });
    const three = Model.create(vocab, { dim: 4, seed: 2, classes: 3 });
    for (const f of [evaluateEnsemble, predictEnsemble, ensembleProbabilities] as const) {
      expect(() => f([], many)).toThrow(/at least one model/);
      expect(() => f([five, three], many)).toThrow(/same number of classes, got 5 and 3/);
    }
  });

  it('predictEnsemble: one model is predict; two give each node the mean probabilities and their argmax', () => {
    const a = Model.create(vocab, { dim: 4, seed: 2 });
    const b = Model.create(new Vocabulary(['*UNK*', 'good', 'bad']), { dim: 6, seed: 9 });
    expect(predictEnsemble([a], many)).toEqual(predict(a, many));
    const [pa, pb] = [predict(a, many), predict(b, many)];
    const both = predictEnsemble([a, b], many);
    expect(both.length).toBe(many.length);
    let checked = 0;
    both.forEach((p, i) => {
      expect(p.tree).toBe(many[i]);
      const visit = (t: TreeNode) => {
        const mean = pa[i].nodes.get(t)!.probs.map((x, c) => (x + pb[i].nodes.get(t)!.probs[c]) / 2);
        const got = p.nodes.get(t)!;
        got.probs.forEach((x, c) => expect(x).toBeCloseTo(mean[c], 12));
        expect(got.label).toBe(mean.indexOf(Math.max(...mean)));
        checked++;
        if (!('word' in t)) {
          visit(t.left);
          visit(t.right);
        }
      };
      visit(many[i]);
    });
    expect(checked).toBe(evaluateEnsemble([a, b], many).nodes);
  });

  it('ensembleProbabilities: the mean of predict\'s numbers, in tree-table order, over several native calls', () => {
    const a = Model.create(vocab, { dim: 4, seed: 2 });
    const b = Model.create(new Vocabulary(['*UNK*', 'good', 'bad']), { dim: 6, seed: 9 });
    const trees = randomTrees(11, 600, words, 5, 6); // two native calls of at most TREES_PER_CALL trees
    const rows: TreeNode[] = [];
    TreeTable.fromTrees(trees, vocab, {}, (node, i) => (rows[i] = node));
    const [pa, pb] = [predict(a, trees), predict(b, trees)];
    const got = ensembleProbabilities([a, b], trees);
    expect(got.length).toBe(5 * rows.length);
    let row = 0;
    trees.forEach((tree, t) => {
      const { leaves, internal } = countNodes(tree);
      for (const end = row + leaves + internal; row < end; row++) {
        const [x, y] = [pa[t].nodes.get(rows[row])!.probs, pb[t].nodes.get(rows[row])!.probs];
        expect(Array.from(got.subarray(5 * row, 5 * row + 5))).toEqual(x.map((p, c) => (p + y[c]) / 2));
      }
    });
    expect(row).toBe(rows.length);
  });
});

describe('numerical faults', () => {
  it('a model whose finite weights overflow is reported, not scored, in evaluate and predict', () => {
    const model = Model.create(new Vocabulary(['*UNK*', 'good', 'bad']), { dim: 3, seed: 1 });
    // A word vector of 1e30 passes the loader's finiteness check; with identity
    // leaves the classifier's scores for that leaf overflow float32.
    model.tensors.L.fill(1e30, 3, 6);
    const trees = parseTrees('(3 (2 good) (1 bad))');
    expect(() => evaluate(model, trees)).toThrow(/overflowed to non-finite values on trees 1–1/);
    expect(() => predict(model, trees)).toThrow(/overflowed to non-finite values/);
  });
});
