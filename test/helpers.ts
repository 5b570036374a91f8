import * as fs from 'node:fs';
import * as path from 'node:path';
import { Random } from '../src/random';
import type { TreeNode } from '../src/tree';

/** The Stanford Sentiment Treebank beside the project (../shared/data/sst), or undefined when absent. */
export const SST_DIR = path.resolve(__dirname, '../../shared/data/sst');
export const HAVE_SST = fs.existsSync(path.join(SST_DIR, 'train.txt'));

/**
 * Random binary trees with random labels over `words`: shapes from a random
 * split of the leaf span, so both deep chains and balanced trees occur.
 */
export function randomTrees(seed: number, count: number, words: readonly string[], classes = 5, maxLeaves = 12): TreeNode[] {
  const rng = new Random(seed);
  const build = (leaves: number): TreeNode => {
    if (leaves === 1) return { label: rng.int(classes), word: words[rng.int(words.length)] };
    const split = 1 + rng.int(leaves - 1);
    return { label: rng.int(classes), left: build(split), right: build(leaves - split) };
  };
  return Array.from({ length: count }, () => build(1 + rng.int(maxLeaves)));
}
