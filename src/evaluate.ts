/**
 * Evaluation as Socher et al. (2013) report it in Table 1: 5-class and binary
 * accuracy, over all nodes and over roots (whole sentences), plus the mean
 * loss, confusion matrices and per-class precision/recall/F1 that show *where*
 * a model falls short of those numbers.
 */
import { compileChunks, TreeTable } from './batch';
import type { Model } from './model';
import { assertFiniteProbabilities, createWorkspace, nativeDims } from './native';
import { ensembleClasses, ensembleProbabilities } from './predict';
import type { TreeNode } from './tree';

/**
 * Precision, recall and F1 of one class. A ratio whose denominator is zero (a
 * class never predicted, never gold, or P = R = 0) is defined as 0 rather than
 * NaN, so reports, JSON output and comparisons never meet NaN.
 */
export interface ClassStats {
  precision: number;
  recall: number;
  f1: number;
  /** Labelled nodes whose gold label is this class. */
  support: number;
}

/**
 * Every accuracy is a fraction in [0, 1]. With nothing to count (no labelled
 * nodes, or no non-neutral ones for the binary metrics) an accuracy and the
 * mean loss are 0, never NaN; the matching count being 0 tells the two apart.
 */
export interface Metrics {
  /** Mean −log p(gold) per labelled node. */
  loss: number;
  /** Labelled nodes (all levels, roots included). */
  nodes: number;
  /** Labelled roots, i.e. trees whose root has a gold label. */
  roots: number;
  /** 5-class (C-class) accuracy over all labelled nodes and over labelled roots. */
  allFine: number;
  rootFine: number;
  /** The paper's binary accuracy: non-neutral gold only, negative vs positive probability mass. */
  allBinary: number;
  rootBinary: number;
  /** Nodes and roots the binary metrics counted (those with non-neutral gold). */
  binaryNodes: number;
  binaryRoots: number;
  /** Counts indexed [gold][predicted], predicted = argmax. */
  confusion: { all: number[][]; root: number[][] };
  perClass: { all: ClassStats[]; root: ClassStats[] };
}

export interface MetricsInput {
  classes: number;
  /** Gold label per node; −1 marks an unlabelled node, which no metric counts. */
  gold: Int32Array;
  /** Node-major class probabilities: probs[n * classes + c]. */
  probs: Float32Array | Float64Array;
  /** 1 where the node is a tree's root. */
  isRoot: Uint8Array;
  /** Summed −log p(gold) over the labelled nodes. */
  lossSum: number;
}

/**
 * The classes below `lo` count as negative and those from `hi` on as positive.
 * For odd C the middle class (C−1)/2 is neutral, as class 2 is in SST's five.
 * For even C there is no neutral class, so nothing is excluded and the halves
 * split at C/2 (lo = hi = C/2): with C = 2 binary accuracy is plain accuracy.
 */
export function binarySplit(classes: number): { lo: number; hi: number; neutral: number | undefined } {
  if (classes % 2 === 1) {
    const neutral = (classes - 1) / 2;
    return { lo: neutral, hi: neutral + 1, neutral };
  }
  return { lo: classes / 2, hi: classes / 2, neutral: undefined };
}

function square(n: number): number[][] {
  return Array.from({ length: n }, () => new Array<number>(n).fill(0));
}

function perClassStats(confusion: number[][]): ClassStats[] {
  const C = confusion.length;
  return Array.from({ length: C }, (_, c) => {
    const tp = confusion[c][c];
    let support = 0;
    let predicted = 0;
    for (let k = 0; k < C; k++) {
      support += confusion[c][k];
      predicted += confusion[k][c];
    }
    const precision = predicted === 0 ? 0 : tp / predicted;
    const recall = support === 0 ? 0 : tp / support;
    const f1 = precision + recall === 0 ? 0 : (2 * precision * recall) / (precision + recall);
    return { precision, recall, f1, support };
  });
}

function trace(m: number[][]): number {
  let s = 0;
  for (let i = 0; i < m.length; i++) s += m[i][i];
  return s;
}

const ratio = (a: number, b: number): number => (b === 0 ? 0 : a / b);

/** Metrics from per-node gold labels and predicted probabilities. */
export function computeMetrics(input: MetricsInput): Metrics {
  const { classes: C, gold, probs, isRoot, lossSum } = input;
  if (!Number.isInteger(C) || C < 2) throw new RangeError(`classes must be an integer ≥ 2, got ${C}`);
  const N = gold.length;
  if (probs.length !== N * C) throw new RangeError(`probs has ${probs.length} values, needs classes × nodes = ${N * C}`);
  if (isRoot.length !== N) throw new RangeError(`isRoot has ${isRoot.length} values, gold has ${N}`);

  const { lo, hi, neutral } = binarySplit(C);
  const all = square(C);
  const root = square(C);
  let binaryNodes = 0;
  let binaryRoots = 0;
  let binaryAllCorrect = 0;
  let binaryRootCorrect = 0;

  for (let n = 0; n < N; n++) {
    const g = gold[n];
    if (g === -1) continue;
    if (!(g >= 0 && g < C)) throw new RangeError(`gold label ${g} of node ${n} is outside 0..${C - 1} (or −1 for none)`);
    const base = n * C;
    // Strict '>' keeps the first index on ties.
    let best = 0;
    for (let c = 1; c < C; c++) if (probs[base + c] > probs[base + best]) best = c;
    all[g][best]++;
    const atRoot = isRoot[n] !== 0;
    if (atRoot) root[g][best]++;

    if (g === neutral) continue;
    // Binary prediction from probability mass, not from the argmax's polarity:
    // [0.3, 0.3, 0.4, 0, 0] is an argmax-neutral node the model still leans
    // negative on. On an exact tie the negative side wins, the same "lower
    // class first" rule as the argmax.
    let negative = 0;
    let positive = 0;
    for (let c = 0; c < lo; c++) negative += probs[base + c];
    for (let c = hi; c < C; c++) positive += probs[base + c];
    const correct = (positive > negative) === g >= hi ? 1 : 0;
    binaryNodes++;
    binaryAllCorrect += correct;
    if (atRoot) {
      binaryRoots++;
      binaryRootCorrect += correct;
    }
  }

  let nodes = 0;
  let roots = 0;
  for (let g = 0; g < C; g++) {
    for (let p = 0; p < C; p++) {
      nodes += all[g][p];
      roots += root[g][p];
    }
  }
  return {
    loss: ratio(lossSum, nodes),
    nodes,
    roots,
    allFine: ratio(trace(all), nodes),
    rootFine: ratio(trace(root), roots),
    allBinary: ratio(binaryAllCorrect, binaryNodes),
    rootBinary: ratio(binaryRootCorrect, binaryRoots),
    binaryNodes,
    binaryRoots,
    confusion: { all, root },
    perClass: { all: perClassStats(all), root: perClassStats(root) },
  };
}

/** Runs the model's forward pass over `trees` and scores its predictions against their gold labels. */
export function evaluate(model: Model, trees: readonly TreeNode[]): Metrics {
  return computeMetrics(nodeProbabilities(model, trees));
}

/**
 * Scores an ensemble: the mean of the models' class probabilities, node by
 * node, against the gold labels. The models may differ in dimension and
 * vocabulary, not in their classes. The loss is the mean over labelled nodes
 * of −log of the mean probability of the gold class (one model: its own loss,
 * as `evaluate` gives it). On SST, 5 default models scored 46.9–47.4 % at
 * root against ~44.8 % for one (docs/training.md).
 */
export function evaluateEnsemble(models: readonly Model[], trees: readonly TreeNode[]): Metrics {
  const C = ensembleClasses(models);
  if (models.length === 1) return evaluate(models[0], trees);
  const probs = Float32Array.from(ensembleProbabilities(models, trees));
  // Its rows are the trees' table rows, whose gold labels any model's table gives; each tree's root is its last row.
  const { label: gold, treeStart } = TreeTable.fromTrees(trees, models[0].vocab);
  const isRoot = new Uint8Array(gold.length);
  for (let t = 0; t < trees.length; t++) isRoot[treeStart[t + 1] - 1] = 1;
  let lossSum = 0;
  for (let n = 0; n < gold.length; n++) if (gold[n] >= 0) lossSum -= Math.log(Math.max(probs[n * C + gold[n]], Number.MIN_VALUE));
  return computeMetrics({ classes: C, gold, probs, isRoot, lossSum });
}

/** Every node's gold label, class probabilities and root flag under `model`, and the summed native loss. */
function nodeProbabilities(model: Model, trees: readonly TreeNode[]): MetricsInput {
  const C = model.config.classes;
  const batches = [...compileChunks(trees, model.vocab)];
  const total = batches.reduce((sum, batch) => sum + batch.left.length, 0);
  const gold = new Int32Array(total);
  const probs = new Float32Array(total * C);
  const isRoot = new Uint8Array(total);
  let lossSum = 0;
  if (batches.length > 0) {
    const workspace = createWorkspace();
    const dims = nativeDims(model);
    let at = 0;
    let firstTree = 0;
    for (const batch of batches) {
      const n = batch.left.length;
      const p = new Float32Array(C * n);
      lossSum += workspace.forward(model.params, dims, batch, p);
      assertFiniteProbabilities(p, `trees ${firstTree + 1}–${firstTree + batch.roots.length}`);
      firstTree += batch.roots.length;
      probs.set(p, at * C);
      gold.set(batch.label, at);
      for (const r of batch.roots) isRoot[at + r] = 1;
      at += n;
    }
  }
  return { classes: C, gold, probs, isRoot, lossSum };
}

/** A fraction as a percentage with two decimals, as every human-readable report prints it. */
export const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;

function padStart(s: string, w: number): string {
  return s.length >= w ? s : ' '.repeat(w - s.length) + s;
}

function confusionTable(m: number[][], indent: string): string[] {
  const C = m.length;
  let width = 4;
  for (const row of m) for (const v of row) width = Math.max(width, String(v).length);
  const head = `${indent}${padStart('gold\\pred', 10)}` + Array.from({ length: C }, (_, c) => ' ' + padStart(String(c), width)).join('');
  const rows = m.map((row, g) => `${indent}${padStart(String(g), 10)}` + row.map((v) => ' ' + padStart(String(v), width)).join(''));
  return [head, ...rows];
}

/** A plain-text report: the four Table 1 accuracies with their counts, loss, confusion matrices, per-class P/R/F1. */
export function formatMetrics(m: Metrics, title?: string): string {
  const C = m.confusion.all.length;
  // Counts are reconstructed from the fractions; round() undoes the division exactly for any realistic count.
  const correct = (acc: number, n: number) => Math.round(acc * n);
  const line = (name: string, acc: number, n: number) =>
    `  ${name.padEnd(20)} ${padStart(pct(acc), 8)}  (${correct(acc, n)} / ${n})`;
  const out: string[] = [];
  if (title) out.push(title);
  out.push(
    line('all nodes, fine', m.allFine, m.nodes),
    line('roots, fine', m.rootFine, m.roots),
    line('all nodes, binary', m.allBinary, m.binaryNodes),
    line('roots, binary', m.rootBinary, m.binaryRoots),
    `  ${'mean loss'.padEnd(20)} ${padStart(m.loss.toFixed(4), 8)}  per labelled node`,
    '',
    '  confusion, all nodes (rows gold, columns predicted):',
    ...confusionTable(m.confusion.all, '  '),
    '',
    '  confusion, roots (rows gold, columns predicted):',
    ...confusionTable(m.confusion.root, '  '),
    '',
    '  per class (precision, recall, F1; 0 where a ratio is undefined):',
  );
  const f = (x: number) => padStart(x.toFixed(3), 6);
  const stats = (s: ClassStats) => `${f(s.precision)} ${f(s.recall)} ${f(s.f1)} ${padStart(String(s.support), 8)}`;
  const heads = `${padStart('P', 6)} ${padStart('R', 6)} ${padStart('F1', 6)} ${padStart('support', 8)}`;
  out.push(`  ${''.padEnd(6)}   ${'all nodes'.padEnd(heads.length)}   roots`, `  ${'class'.padEnd(6)}   ${heads} | ${heads}`);
  for (let c = 0; c < C; c++) out.push(`  ${String(c).padEnd(6)}   ${stats(m.perClass.all[c])} | ${stats(m.perClass.root[c])}`);
  return out.join('\n');
}
