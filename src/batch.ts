import type { Schedule } from './native';
import type { TreeNode } from './tree';
import type { Vocabulary } from './vocab';

/** A minibatch compiled for the native core, plus what callers need to map results back to trees. */
export interface CompiledBatch extends Schedule {
  /** Schedule index of each tree's root, in the order the trees were given. */
  roots: Int32Array;
  /** The tree node behind each schedule index (for writing predictions back). */
  nodes: TreeNode[];
  /** Distinct word ids of the leaves, ascending: the rows of L this batch touches. */
  words: Int32Array;
}

export interface CompileOptions {
  /** Send gold labels to the native core (default). Without them no node has a loss. */
  labels?: boolean;
}

/**
 * Trees per native call when a caller hands over a whole treebank (gradient,
 * evaluation, prediction): enough that call overhead vanishes, few enough
 * that the native workspace stays in the tens of megabytes.
 */
export const TREES_PER_CALL = 512;

/** `trees` compiled in consecutive chunks of at most `size` trees. */
export function* compileChunks(
  trees: readonly TreeNode[],
  vocab: Vocabulary,
  options: CompileOptions = {},
  size = TREES_PER_CALL,
): Generator<CompiledBatch> {
  for (let i = 0; i < trees.length; i += size) yield compileBatch(trees.slice(i, i + size), vocab, options);
}

/**
 * Turns trees into the flat schedule the native core runs in one call.
 *
 * Nodes are grouped by height across the whole minibatch (leaves are height 0,
 * a parent is one more than its taller child), so every level is one batch of
 * independent nodes: the native side computes a level with one GEMM instead of
 * one small product per node. Within a level, nodes keep the order of their
 * trees, which makes the schedule (and so the summation order of gradients) a
 * function of the trees alone.
 */
export function compileBatch(trees: readonly TreeNode[], vocab: Vocabulary, options: CompileOptions = {}): CompiledBatch {
  const withLabels = options.labels ?? true;
  // First pass: every node in post-order (children before parents), with its
  // height and its rank within that height.
  const entryNode: TreeNode[] = [];
  const entryHeight: number[] = [];
  const entryRank: number[] = [];
  const entryLeft: number[] = []; // entry index of the children, -1 for leaves
  const entryRight: number[] = [];
  const perHeight: number[] = [];
  const rootEntry: number[] = [];
  // Iterative post-order, so that trees thousands of levels deep cannot overflow the stack.
  const stack: { node: TreeNode; expanded: boolean }[] = [];
  const done: number[] = []; // entry indices of finished subtrees, children before parents
  for (const tree of trees) {
    stack.push({ node: tree, expanded: false });
    while (stack.length > 0) {
      const top = stack[stack.length - 1];
      const node = top.node;
      let left = -1;
      let right = -1;
      let height = 0;
      if ('left' in node) {
        if (!top.expanded) {
          top.expanded = true;
          stack.push({ node: node.right, expanded: false }, { node: node.left, expanded: false });
          continue;
        }
        right = done.pop()!;
        left = done.pop()!;
        height = Math.max(entryHeight[left], entryHeight[right]) + 1;
      }
      stack.pop();
      if (perHeight.length <= height) perHeight.push(0);
      const entry = entryNode.length;
      entryNode.push(node);
      entryHeight.push(height);
      entryRank.push(perHeight[height]++);
      entryLeft.push(left);
      entryRight.push(right);
      done.push(entry);
    }
    rootEntry.push(done.pop()!);
  }

  const n = entryNode.length;
  const levelStart = new Int32Array(Math.max(perHeight.length, 1) + 1);
  for (let h = 0; h < perHeight.length; h++) levelStart[h + 1] = levelStart[h] + perHeight[h];
  const indexOf = (entry: number) => levelStart[entryHeight[entry]] + entryRank[entry];

  const left = new Int32Array(n);
  const right = new Int32Array(n);
  const word = new Int32Array(n);
  const label = new Int32Array(n);
  const nodes = new Array<TreeNode>(n);
  const touched = new Set<number>();
  for (let e = 0; e < n; e++) {
    const i = indexOf(e);
    const node = entryNode[e];
    nodes[i] = node;
    label[i] = withLabels ? node.label : -1;
    if ('word' in node) {
      left[i] = right[i] = -1;
      word[i] = vocab.id(node.word);
      touched.add(word[i]);
    } else {
      left[i] = indexOf(entryLeft[e]);
      right[i] = indexOf(entryRight[e]);
      word[i] = -1;
    }
  }
  const words = Int32Array.from(touched).sort();
  return { left, right, word, label, levelStart, roots: Int32Array.from(rootEntry, indexOf), nodes, words };
}
