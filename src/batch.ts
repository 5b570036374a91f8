import type { Schedule } from './native';
import { countNodes, type TreeNode } from './tree';
import type { Vocabulary } from './vocab';

/** A schedule plus what the trainer needs from it. */
export interface CompiledSchedule extends Schedule {
  /** Schedule index of each tree's root, in the order the trees were given. */
  roots: Int32Array;
  /** Distinct word ids of the leaves, ascending: the rows of L this batch touches. */
  words: Int32Array;
}

/** A minibatch compiled for the native core, plus what callers need to map results back to trees. */
export interface CompiledBatch extends CompiledSchedule {
  /** The tree node behind each schedule index (for writing predictions back). */
  nodes: TreeNode[];
}

/** How much each node's loss terms weigh, as {@link TreeTable.compile} writes them into a schedule. */
export interface LossWeights {
  /** Loss weight of each tree's root (Schedule.weight); the other nodes weigh 1. Default 1 (no weights sent). */
  rootWeight?: number;
  /** Weight of the polarity term at every node (Schedule.polarity). Default 0. */
  polarityWeight?: number;
  /** Weight of the polarity term at each tree's root instead. Default: polarityWeight. With both 0, no polarity is sent. */
  rootPolarityWeight?: number;
}

export interface CompileOptions extends LossWeights {
  /** Send gold labels to the native core (default). Without them no node has a loss. */
  labels?: boolean;
  /** Allocate the table in SharedArrayBuffers, so worker threads can read it without a copy. */
  shared?: boolean;
}

/** What {@link TreeTable.compile} may add to a schedule. */
export interface ScheduleOptions extends LossWeights {
  /** Receives the table index behind each schedule slot. */
  source?: Int32Array;
}

/**
 * Trees per native call when a caller hands over a whole treebank (gradient,
 * evaluation, prediction): enough that call overhead vanishes, few enough
 * that the native workspace stays in the tens of megabytes.
 */
export const TREES_PER_CALL = 512;

/** The typed arrays of a {@link TreeTable}; what is sent to worker threads. */
export interface TreeTableData {
  /** Node offset of each tree (length trees + 1); a tree's nodes are in post-order, root last. */
  treeStart: Int32Array;
  /** Per node: height (leaves 0), children as table indices (−1 for leaves), word id (−1 for internal nodes), label. */
  height: Int32Array;
  left: Int32Array;
  right: Int32Array;
  word: Int32Array;
  label: Int32Array;
  /**
   * Per node, the class distribution its loss aims at in place of the one-hot
   * of its label (classes values a node; Schedule.target): distillation's
   * mix of gold labels and teacher models. Absent: the labels alone.
   */
  target?: Float32Array;
}

/**
 * A treebank flattened once into typed arrays, so that any subset of its
 * trees compiles into a schedule with a few passes over integers — per
 * minibatch, in whichever thread runs it — instead of walking tree objects.
 */
export class TreeTable implements TreeTableData {
  readonly treeStart: Int32Array;
  readonly height: Int32Array;
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly word: Int32Array;
  readonly label: Int32Array;
  readonly target?: Float32Array;

  constructor(data: TreeTableData) {
    ({ treeStart: this.treeStart, height: this.height, left: this.left, right: this.right, word: this.word, label: this.label, target: this.target } = data);
    if (this.target && this.target.length % Math.max(1, this.label.length) !== 0) {
      throw new RangeError(`a tree table's targets must hold the same number of classes for each of its ${this.label.length} nodes, got ${this.target.length} values`);
    }
  }

  get trees(): number {
    return this.treeStart.length - 1;
  }

  /** The plain arrays, for `postMessage` (shared memory stays shared). */
  get data(): TreeTableData {
    const { treeStart, height, left, right, word, label, target } = this;
    return target ? { treeStart, height, left, right, word, label, target } : { treeStart, height, left, right, word, label };
  }

  /**
   * Flattens `trees`. `visit`, when given, receives every node with its table
   * index (how compileBatch maps schedule slots back to tree objects).
   */
  static fromTrees(trees: readonly TreeNode[], vocab: Vocabulary, options: CompileOptions = {}, visit?: (node: TreeNode, index: number) => void): TreeTable {
    const withLabels = options.labels ?? true;
    let total = 0;
    const counts: number[] = [];
    for (const tree of trees) {
      const { leaves, internal } = countNodes(tree);
      const n = leaves + internal;
      counts.push(n);
      total += n;
    }
    const alloc = (n: number) => (options.shared ? new Int32Array(new SharedArrayBuffer(4 * n)) : new Int32Array(n));
    const table = new TreeTable({
      treeStart: alloc(trees.length + 1),
      height: alloc(total),
      left: alloc(total),
      right: alloc(total),
      word: alloc(total),
      label: alloc(total),
    });
    const { treeStart, height, left, right, word, label } = table;
    let at = 0;
    // Iterative post-order, so that trees thousands of levels deep cannot overflow the stack.
    const stack: { node: TreeNode; expanded: boolean }[] = [];
    const done: number[] = [];
    trees.forEach((tree, t) => {
      treeStart[t] = at;
      stack.push({ node: tree, expanded: false });
      while (stack.length > 0) {
        const top = stack[stack.length - 1];
        const node = top.node;
        if ('left' in node && !top.expanded) {
          top.expanded = true;
          stack.push({ node: node.right, expanded: false }, { node: node.left, expanded: false });
          continue;
        }
        stack.pop();
        const i = at++;
        label[i] = withLabels ? node.label : -1;
        if ('left' in node) {
          right[i] = done.pop()!;
          left[i] = done.pop()!;
          word[i] = -1;
          height[i] = Math.max(height[left[i]], height[right[i]]) + 1;
        } else {
          left[i] = right[i] = -1;
          word[i] = vocab.id(node.word);
          height[i] = 0;
        }
        visit?.(node, i);
        done.push(i);
      }
      done.pop();
    });
    treeStart[trees.length] = at;
    return table;
  }

  /**
   * The schedule of the trees `ids` (indices into the table), in that order.
   *
   * Nodes are grouped by height across the whole minibatch (leaves are height
   * 0, a parent is one more than its taller child), so every level is one
   * batch of independent nodes: the native side computes a level with one
   * GEMM instead of one small product per node. Within a level, nodes keep
   * the order of their trees, which makes the schedule (and so the summation
   * order of gradients) a function of the trees alone.
   */
  compile(ids: ArrayLike<number>, options: ScheduleOptions = {}): CompiledSchedule {
    const { source, rootWeight = 1, polarityWeight = 0, rootPolarityWeight = polarityWeight } = options;
    const { treeStart, height } = this;
    let n = 0;
    let levels = 1;
    let widest = 0;
    for (let j = 0; j < ids.length; j++) {
      const t = ids[j];
      if (!(t >= 0 && t < this.trees)) throw new RangeError(`tree index ${t} is outside the table (${this.trees} trees)`);
      const size = treeStart[t + 1] - treeStart[t];
      n += size;
      widest = Math.max(widest, size);
      levels = Math.max(levels, height[treeStart[t + 1] - 1] + 1); // the root is the tallest node
    }
    const levelStart = new Int32Array(levels + 1);
    for (let j = 0; j < ids.length; j++) {
      const t = ids[j];
      for (let i = treeStart[t]; i < treeStart[t + 1]; i++) levelStart[height[i] + 1]++;
    }
    for (let h = 0; h < levels; h++) levelStart[h + 1] += levelStart[h];
    const leaves = levelStart[1];
    // The schedule's arrays and the scratch below are views of one buffer: a
    // training worker compiles every shard, and eight typed arrays allocated
    // apart took ~10 of the ~35 µs a shard's compile cost (SST shards).
    const ints = new Int32Array(4 * n + ids.length + levels + widest + leaves);
    let used = 0;
    const take = (length: number) => ints.subarray(used, (used += length));
    const left = take(n);
    const right = take(n);
    const word = take(n);
    const label = take(n);
    const roots = take(ids.length);
    const cursor = take(levels);
    cursor.set(levelStart.subarray(0, levels));
    const slot = take(widest); // schedule index of each node of the tree in progress
    const tableLabel = this.label, tableWord = this.word, tableLeft = this.left, tableRight = this.right, tableTarget = this.target;
    const C = tableTarget ? tableTarget.length / tableLabel.length : 0;
    const target = tableTarget ? new Float32Array(n * C) : undefined;
    for (let j = 0; j < ids.length; j++) {
      const t = ids[j];
      const base = treeStart[t];
      const end = treeStart[t + 1];
      for (let i = base; i < end; i++) {
        const k = cursor[height[i]]++;
        slot[i - base] = k;
        label[k] = tableLabel[i];
        word[k] = tableWord[i];
        const l = tableLeft[i];
        if (l < 0) {
          left[k] = right[k] = -1;
        } else {
          left[k] = slot[l - base];
          right[k] = slot[tableRight[i] - base];
        }
        if (target) for (let c = 0; c < C; c++) target[k * C + c] = tableTarget![i * C + c];
        if (source) source[k] = i;
      }
      roots[j] = slot[end - 1 - base];
    }
    // The leaves are slots 0…leaves−1, so their words are word's first entries.
    const words = take(leaves);
    words.set(word.subarray(0, leaves));
    const schedule: CompiledSchedule = { left, right, word, label, levelStart, roots, words: sortDistinct(words) };
    if (target) schedule.target = target;
    if (polarityWeight !== 0 || rootPolarityWeight !== 0) {
      schedule.polarity = new Float32Array(n).fill(polarityWeight);
      for (const r of roots) schedule.polarity[r] = rootPolarityWeight;
    }
    if (rootWeight !== 1) {
      schedule.weight = new Float32Array(n).fill(1);
      for (const r of roots) schedule.weight[r] = rootWeight;
    }
    return schedule;
  }
}

/** The distinct values, ascending. */
export function distinctSorted(values: ArrayLike<number>): Int32Array {
  return sortDistinct(Int32Array.from(values));
}

/** Sorts `values` in place and moves its distinct values to the front: returns that prefix (a view of `values`). */
export function sortDistinct(values: Int32Array): Int32Array {
  values.sort();
  let m = 0;
  for (let i = 0; i < values.length; i++) if (i === 0 || values[i] !== values[m - 1]) values[m++] = values[i];
  return values.subarray(0, m);
}

/** Compiles trees given as objects into one schedule (see {@link TreeTable.compile}). */
export function compileBatch(trees: readonly TreeNode[], vocab: Vocabulary, options: CompileOptions = {}): CompiledBatch {
  const byIndex: TreeNode[] = [];
  const table = TreeTable.fromTrees(trees, vocab, options, (node, i) => (byIndex[i] = node));
  const source = new Int32Array(byIndex.length);
  const { rootWeight, polarityWeight, rootPolarityWeight } = options;
  const schedule = table.compile(Array.from(trees.keys()), { source, rootWeight, polarityWeight, rootPolarityWeight });
  return { ...schedule, nodes: Array.from(source, (i) => byIndex[i]) };
}

/** `trees` compiled in consecutive chunks of at most `size` trees. */
export function* compileChunks(
  trees: readonly TreeNode[],
  vocab: Vocabulary,
  options: CompileOptions = {},
  size = TREES_PER_CALL,
): Generator<CompiledBatch> {
  for (let i = 0; i < trees.length; i += size) yield compileBatch(trees.slice(i, i + size), vocab, options);
}
