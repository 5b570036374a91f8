/**
 * Sentiment prediction for every node of a tree, and a fallback for plain
 * text, which the model cannot read directly: an RNTN composes along a binary
 * parse. Parsed input (PTB trees from a constituency parser, as SST's are) is
 * better; see `binarize` for what happens to plain text.
 */
import { compileChunks, TreeTable, TREES_PER_CALL } from './batch';
import type { Model } from './model';
import { assertFiniteProbabilities, createWorkspace, nativeDims } from './native';
import { formatTree, type TreeNode } from './tree';

/** A node's prediction: the most probable class and every class's probability. */
export interface NodePrediction {
  label: number;
  probs: number[];
}

export interface TreePrediction {
  tree: TreeNode;
  /** Every node of `tree`, keyed by the node object. */
  nodes: Map<TreeNode, NodePrediction>;
}

/** Class probabilities of every node of every tree (gold labels, if any, are ignored). */
export function predict(model: Model, trees: readonly TreeNode[]): TreePrediction[] {
  const C = model.config.classes;
  const workspace = createWorkspace();
  const dims = nativeDims(model);
  const out: TreePrediction[] = [];
  let next = 0;
  for (const batch of compileChunks(trees, model.vocab, { labels: false })) {
    const probs = new Float32Array(C * batch.left.length);
    workspace.forward(model.params, dims, batch, probs);
    assertFiniteProbabilities(probs, `trees ${next + 1}–${next + batch.roots.length}`);
    const byNode = new Map<TreeNode, NodePrediction>();
    batch.nodes.forEach((node, n) => {
      const p = Array.from(probs.subarray(n * C, (n + 1) * C));
      byNode.set(node, { label: argmax(p), probs: p });
    });
    for (let r = 0; r < batch.roots.length; r++) out.push({ tree: trees[next++], nodes: byNode });
  }
  return out;
}

/**
 * Predictions of an ensemble: every node's class probabilities averaged over
 * the models (which may differ in size and vocabulary, not in classes), and
 * the most probable class of the average. One model: exactly `predict`.
 */
export function predictEnsemble(models: readonly Model[], trees: readonly TreeNode[]): TreePrediction[] {
  const C = ensembleClasses(models);
  if (models.length === 1) return predict(models[0], trees);
  const mean = ensembleProbabilities(models, trees);
  // Its rows are the trees' table rows; any vocabulary gives the same ones.
  const rows: TreeNode[] = [];
  const { treeStart } = TreeTable.fromTrees(trees, models[0].vocab, { labels: false }, (node, i) => (rows[i] = node));
  return trees.map((tree, t) => {
    const nodes = new Map<TreeNode, NodePrediction>();
    for (let i = treeStart[t]; i < treeStart[t + 1]; i++) {
      const probs = Array.from(mean.subarray(i * C, (i + 1) * C));
      nodes.set(rows[i], { label: argmax(probs), probs });
    }
    return { tree, nodes };
  });
}

/**
 * The ensemble's mean class probabilities of every node of `trees`, in the
 * order of their tree table (`TreeTable.fromTrees`: tree after tree, each in
 * post-order, the root last): `classes` values a node, summed in model order
 * in float64. Typed arrays throughout, for whole training sets
 * (distillation's teachers, src/train.ts); `predictEnsemble` and
 * `evaluateEnsemble` read their averages from it.
 */
export function ensembleProbabilities(models: readonly Model[], trees: readonly TreeNode[]): Float64Array {
  const C = ensembleClasses(models);
  let mean = new Float64Array(0);
  for (const model of models) {
    // Each model reads the words with its own vocabulary; the rows are the same for all.
    const table = TreeTable.fromTrees(trees, model.vocab, { labels: false });
    if (mean.length === 0) mean = new Float64Array(C * table.label.length);
    const workspace = createWorkspace();
    const dims = nativeDims(model);
    for (let first = 0; first < trees.length; first += TREES_PER_CALL) {
      const ids = Array.from({ length: Math.min(TREES_PER_CALL, trees.length - first) }, (_, j) => first + j);
      const source = new Int32Array(table.treeStart[first + ids.length] - table.treeStart[first]);
      const schedule = table.compile(ids, { source });
      const probs = new Float32Array(C * source.length);
      workspace.forward(model.params, dims, schedule, probs);
      assertFiniteProbabilities(probs, `trees ${first + 1}–${first + ids.length}`);
      for (let k = 0; k < source.length; k++) for (let c = 0; c < C; c++) mean[source[k] * C + c] += probs[k * C + c];
    }
  }
  for (let i = 0; i < mean.length; i++) mean[i] /= models.length;
  return mean;
}

/** The class count the models of an ensemble share; throws when there are none or they differ. */
export function ensembleClasses(models: readonly Model[]): number {
  if (models.length === 0) throw new RangeError('an ensemble needs at least one model');
  const C = models[0].config.classes;
  for (const m of models) {
    if (m.config.classes !== C) throw new RangeError(`the models of an ensemble must have the same number of classes, got ${C} and ${m.config.classes}`);
  }
  return C;
}

function argmax(p: readonly number[]): number {
  let best = 0;
  for (let c = 1; c < p.length; c++) if (p[c] > p[best]) best = c;
  return best;
}

/** The tree in PTB form with each node's predicted label in place of the gold one. */
export function formatPredictionPtb(p: TreePrediction): string {
  return formatTree(p.tree, (node) => p.nodes.get(node)!.label);
}

/**
 * One JSON object per tree: the sentence, the root's prediction, and every
 * node in pre-order as a flat list (children by index, so arbitrarily deep
 * trees serialise without recursion). `gold` appears where the input had labels.
 */
export function formatPredictionJson(p: TreePrediction, hasGold: boolean): string {
  const nodes: object[] = [];
  const words: string[] = [];
  const stack: TreeNode[] = [p.tree];
  const index = new Map<TreeNode, number>();
  while (stack.length > 0) {
    const node = stack.pop()!;
    const i = nodes.length;
    index.set(node, i);
    const pred = p.nodes.get(node)!;
    const entry: Record<string, unknown> = { label: pred.label, probs: pred.probs.map(round) };
    if (hasGold) entry.gold = node.label;
    if ('word' in node) {
      entry.word = node.word;
      words.push(node.word);
    } else {
      stack.push(node.right, node.left);
    }
    nodes.push(entry);
  }
  // Children's indices are known once every node has one.
  for (const [node, i] of index) {
    if ('left' in node) Object.assign(nodes[i], { left: index.get(node.left), right: index.get(node.right) });
  }
  const root = p.nodes.get(p.tree)!;
  return JSON.stringify({ sentence: words.join(' '), label: root.label, probs: root.probs.map(round), nodes });
}

const round = (x: number) => Math.round(x * 1e6) / 1e6;

/**
 * Tokens of a line of plain text: runs of non-whitespace, split on ASCII
 * whitespace only (as the tree contract), with parentheses spelled -LRB- and
 * -RRB- as in SST and the PTB. A bare "(" could not be written back as a PTB
 * leaf (predict's output would not parse), and an SST model knows the
 * spelled forms, not the bare ones.
 */
export function tokenize(line: string): string[] {
  return line
    .split(/[ \t\n\r\f\v]+/)
    .filter((t) => t.length > 0)
    .map((t) => t.replaceAll('(', '-LRB-').replaceAll(')', '-RRB-'));
}

/**
 * A binary tree over plain tokens, for text without a parse: right-branching,
 * (w1 (w2 (w3 w4))). English constituency structure leans right (heads come
 * first, modifiers and complements attach to their right), so this is the
 * closest parse-free shape; a real parser's trees are better and SST's
 * accuracy figures assume them. Labels are −1 (unknown).
 */
export function binarize(tokens: readonly string[]): TreeNode {
  if (tokens.length === 0) throw new RangeError('cannot build a tree from no tokens');
  let tree: TreeNode = { label: -1, word: tokens[tokens.length - 1] };
  for (let i = tokens.length - 2; i >= 0; i--) tree = { label: -1, left: { label: -1, word: tokens[i] }, right: tree };
  return tree;
}
