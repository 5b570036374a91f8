import { describe, expect, it } from 'vitest';
import { compileBatch, sortDistinct, TreeTable } from '../src/batch';
import { countNodes, isLeaf, parseTrees, treeHeight, type TreeNode } from '../src/tree';
import { Vocabulary } from '../src/vocab';
import { randomTrees } from './helpers';

const vocab = new Vocabulary(['*UNK*', 'a', 'b', 'c']);

/** The invariants the native core's validation enforces, checked on the TypeScript side. */
function expectValidSchedule(trees: TreeNode[]) {
  const s = compileBatch(trees, vocab);
  const n = s.left.length;
  const total = trees.reduce((sum, t) => sum + countNodes(t).leaves + countNodes(t).internal, 0);
  expect(n).toBe(total);
  expect(s.levelStart[0]).toBe(0);
  expect(s.levelStart[s.levelStart.length - 1]).toBe(n);
  expect(s.levelStart.length - 1).toBe(Math.max(1, ...trees.map((t) => treeHeight(t) + 1)));
  for (let l = 0; l + 1 < s.levelStart.length; l++) {
    for (let i = s.levelStart[l]; i < s.levelStart[l + 1]; i++) {
      const node = s.nodes[i];
      expect(s.label[i]).toBe(node.label);
      if (l === 0) {
        expect(isLeaf(node)).toBe(true);
        expect([s.left[i], s.right[i]]).toEqual([-1, -1]);
        expect(s.word[i]).toBe(vocab.id((node as { word: string }).word));
      } else {
        expect(isLeaf(node)).toBe(false);
        expect(s.word[i]).toBe(-1);
        // Children come from earlier levels, and one of them from the level just below.
        expect(Math.max(s.left[i], s.right[i])).toBeLessThan(s.levelStart[l]);
        expect(Math.max(s.left[i], s.right[i])).toBeGreaterThanOrEqual(s.levelStart[l - 1]);
        if ('left' in node) {
          expect(s.nodes[s.left[i]]).toBe(node.left);
          expect(s.nodes[s.right[i]]).toBe(node.right);
        }
      }
    }
  }
  expect([...s.roots].map((r) => s.nodes[r])).toEqual(trees);
  // The rows of L the schedule touches: its leaves' words, each once, ascending.
  const leafWords = [...new Set(s.word.subarray(0, s.levelStart[1]))].sort((a, b) => a - b);
  expect([...s.words]).toEqual(leafWords);
  return s;
}

describe('compileBatch', () => {
  it('groups a small forest by height, leaves first', () => {
    const trees = parseTrees('(3 (2 (3 a) (1 b)) (4 c))\n(1 zzz)');
    const s = expectValidSchedule(trees);
    expect([...s.levelStart]).toEqual([0, 4, 5, 6]);
    // Leaves keep tree order: a, b, c from tree 1, then the unknown word of tree 2.
    expect([...s.word.subarray(0, 4)]).toEqual([1, 2, 3, 0]);
    expect([...s.roots]).toEqual([5, 3]);
    expect([...s.words]).toEqual([0, 1, 2, 3]);
  });

  it('produces valid schedules for random forests', () => {
    for (let seed = 1; seed <= 20; seed++) expectValidSchedule(randomTrees(seed, 1 + (seed % 7), ['a', 'b', 'c', 'd'], 5, 30));
  });

  it('carries the per-node targets of a table to the schedule slots of their nodes', () => {
    const trees = randomTrees(9, 5, ['a', 'b', 'c', 'd'], 5, 30);
    const plain = TreeTable.fromTrees(trees, vocab);
    const C = 3;
    const target = Float32Array.from({ length: C * plain.label.length }, (_, i) => i);
    const table = new TreeTable({ ...plain.data, target });
    const source = new Int32Array(plain.label.length);
    const s = table.compile([4, 0, 2], { source });
    expect(s.target!.length).toBe(C * s.left.length);
    for (let k = 0; k < s.left.length; k++) expect([...s.target!.subarray(k * C, (k + 1) * C)]).toEqual([...target.subarray(source[k] * C, (source[k] + 1) * C)]);
    expect(plain.compile([0]).target).toBeUndefined();
    expect(() => new TreeTable({ ...plain.data, target: new Float32Array(C * plain.label.length + 1) })).toThrow(/same number of classes for each of its \d+ nodes/);
  });

  it('sortDistinct sorts in place and returns the distinct values as a prefix view', () => {
    const values = Int32Array.of(5, 3, 5, -1, 3, 9, 9, 0);
    const distinct = sortDistinct(values);
    expect([...distinct]).toEqual([-1, 0, 3, 5, 9]);
    expect(distinct.buffer).toBe(values.buffer);
    expect([...sortDistinct(new Int32Array(0))]).toEqual([]);
  });

  it('can leave labels out (prediction)', () => {
    const s = compileBatch(parseTrees('(3 (2 a) (1 b))'), vocab, { labels: false });
    expect([...s.label]).toEqual([-1, -1, -1]);
  });

  it('handles an empty batch and very deep trees without recursion', () => {
    const empty = compileBatch([], vocab);
    expect([...empty.levelStart]).toEqual([0, 0]);
    let deep: TreeNode = { label: 2, word: 'a' };
    for (let i = 0; i < 100_000; i++) deep = { label: 2, left: { label: 1, word: 'b' }, right: deep };
    const s = compileBatch([deep], vocab);
    expect(s.levelStart.length).toBe(100_002);
    expect(s.roots[0]).toBe(s.left.length - 1);
  });
});
