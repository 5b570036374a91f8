import { describe, it, expect } from 'vitest';
import {
  SYNTHETIC_SPLIT_SIZES,
  SYNTHETIC_VOCABULARY,
  syntheticSplits,
  syntheticTree,
  syntheticTreebank,
} from '../src/synthetic';
import { formatTree, isLeaf, leaves, parseTree, type InternalNode, type TreeNode } from '../src/tree';

const splits = syntheticSplits();
const all = [...splits.train, ...splits.dev, ...splits.test];

function text(tree: TreeNode): string {
  return leaves(tree)
    .map((l) => l.word)
    .join(' ');
}

function nodes(tree: TreeNode): TreeNode[] {
  const out: TreeNode[] = [];
  const stack = [tree];
  while (stack.length > 0) {
    const n = stack.pop()!;
    out.push(n);
    if (!isLeaf(n)) stack.push(n.right, n.left);
  }
  return out;
}

/** Every subtree of the default splits whose words are exactly `phrase`. */
function subtreesFor(phrase: string): TreeNode[] {
  return all.flatMap(nodes).filter((n) => text(n) === phrase);
}

/** Internal nodes whose left child is the word `word`: (word X). */
function headedBy(words: readonly string[]): InternalNode[] {
  return all
    .flatMap(nodes)
    .filter((n): n is InternalNode => !isLeaf(n) && isLeaf(n.left) && words.includes(n.left.word));
}

const sign = (label: number) => Math.sign(label - 2);

describe('syntheticTreebank', () => {
  it('is deterministic in the seed', () => {
    const a = syntheticTreebank({ sentences: 200, seed: 7 }).map((t) => formatTree(t));
    const b = syntheticTreebank({ sentences: 200, seed: 7 }).map((t) => formatTree(t));
    expect(b).toEqual(a);
    const c = syntheticTreebank({ sentences: 200, seed: 8 }).map((t) => formatTree(t));
    // Short sentences may coincide by chance, but not most of them.
    expect(c.filter((s, i) => s === a[i]).length).toBeLessThan(20);
  });

  it('gives the requested number of trees, 2000 by default, and rejects bad counts', () => {
    expect(syntheticTreebank({ sentences: 13 })).toHaveLength(13);
    expect(syntheticTreebank({ sentences: 0 })).toEqual([]);
    expect(syntheticTreebank()).toHaveLength(2000);
    expect(() => syntheticTreebank({ sentences: -1 })).toThrow(RangeError);
    expect(() => syntheticTreebank({ sentences: 1.5 })).toThrow(RangeError);
  });

  it('writes valid SST trees that survive a round trip through the PTB parser', () => {
    for (const tree of all) {
      const line = formatTree(tree);
      expect(formatTree(parseTree(line, { classes: 5 }))).toBe(line);
      for (const n of nodes(tree)) {
        expect(Number.isInteger(n.label) && n.label >= 0 && n.label <= 4).toBe(true);
      }
    }
  });

  it('uses all five labels, at roots and at nodes, with no label starved', () => {
    const roots = [0, 0, 0, 0, 0];
    const every = [0, 0, 0, 0, 0];
    for (const tree of all) {
      roots[tree.label]!++;
      for (const n of nodes(tree)) every[n.label]!++;
    }
    for (let c = 0; c < 5; c++) {
      expect(roots[c]! / all.length).toBeGreaterThan(0.05);
      expect(every[c]).toBeGreaterThan(1000);
    }
  });

  it('varies sentence length, with some sentences of ten words or more', () => {
    const lengths = all.map((t) => leaves(t).length);
    expect(Math.min(...lengths)).toBeLessThanOrEqual(4);
    expect(Math.max(...lengths)).toBeGreaterThanOrEqual(15);
    expect(lengths.filter((n) => n >= 10).length / lengths.length).toBeGreaterThan(0.2);
  });
});

describe('SYNTHETIC_VOCABULARY', () => {
  it('covers every leaf, and every word in it occurs in the default splits', () => {
    const vocab = new Set(SYNTHETIC_VOCABULARY);
    const seen = new Set<string>();
    for (const tree of all) for (const l of leaves(tree)) seen.add(l.word);
    expect([...seen].filter((w) => !vocab.has(w))).toEqual([]);
    expect(SYNTHETIC_VOCABULARY.filter((w) => !seen.has(w))).toEqual([]);
    expect(vocab.size).toBe(SYNTHETIC_VOCABULARY.length);
  });
});

describe('the rule table', () => {
  const label = (s: string) => syntheticTree(s).label;

  it('binarises as (subject (copula (negation (intensifier adjective))))', () => {
    expect(formatTree(syntheticTree('the movie is not very good'))).toBe(
      '(1 (2 (2 the) (2 movie)) (1 (2 is) (1 (2 not) (4 (2 very) (3 good)))))',
    );
    expect(formatTree(syntheticTree('this new film was a mess'))).toBe(
      '(1 (2 (2 this) (2 (2 new) (2 film))) (1 (2 was) (1 (2 a) (1 mess))))',
    );
    expect(formatTree(syntheticTree('it is an extremely dull film'))).toBe(
      '(1 (2 it) (1 (2 is) (1 (2 an) (1 (1 (2 extremely) (1 dull)) (2 film)))))',
    );
  });

  it('binarises contrast as ((X) (but Y)) and nests longer chains to the left', () => {
    expect(formatTree(syntheticTree('the plot is not very good but the acting is superb'))).toBe(
      '(4 (1 (2 (2 the) (2 plot)) (1 (2 is) (1 (2 not) (4 (2 very) (3 good))))) ' +
        '(4 (2 but) (4 (2 (2 the) (2 acting)) (4 (2 is) (4 superb)))))',
    );
    const chain = syntheticTree('it is good and it is nice but it is bad');
    expect(isLeaf(chain)).toBe(false);
    const root = chain as InternalNode;
    expect(text(root.left)).toBe('it is good and it is nice');
    expect(text(root.right)).toBe('but it is bad');
  });

  it('negation flips polarity and dampens, never reaching the extremes', () => {
    expect(label('it is not good')).toBe(1);
    expect(label('it is not bad')).toBe(3);
    expect(label('it is not superb')).toBe(1);
    expect(label('it is not awful')).toBe(3);
    expect(label('it is not very good')).toBe(1);
    expect(label('it is never dull')).toBe(3);
    expect(label('it is not long')).toBe(2);
    expect(label('it was never a masterpiece')).toBe(1);
    expect(label('it was not a disaster')).toBe(3);
  });

  it('negation behaves the same inside generated sentences', () => {
    const notGood = subtreesFor('not good');
    const notBad = subtreesFor('not bad');
    expect(notGood.length).toBeGreaterThan(3);
    expect(notBad.length).toBeGreaterThan(3);
    for (const n of notGood) expect(n.label).toBeLessThan(2);
    for (const n of notBad) expect(n.label).toBeGreaterThanOrEqual(2);
    const negations = headedBy(['not', 'never']);
    expect(negations.length).toBeGreaterThan(500);
    for (const n of negations) {
      expect(n.label).toBeGreaterThanOrEqual(1);
      expect(n.label).toBeLessThanOrEqual(3);
      // A sum, not toBe(-x): -0 and 0 differ under Object.is.
      expect(sign(n.label) + sign(n.right.label)).toBe(0);
    }
  });

  it('intensifiers push toward the extreme and leave neutral words neutral', () => {
    expect(label('it is very good')).toBe(4);
    expect(label('it is really bad')).toBe(0);
    expect(label('it is truly fine')).toBe(3);
    expect(label('it is so dull')).toBe(1);
    expect(label('it is extremely long')).toBe(2);
    for (const n of headedBy(['very', 'really', 'truly', 'extremely', 'so'])) {
      expect(sign(n.label)).toBe(sign(n.right.label));
      expect(Math.abs(n.label - 2)).toBeGreaterThanOrEqual(Math.abs(n.right.label - 2));
    }
  });

  it('contrast follows the clause after "but", so word order decides', () => {
    expect(label('the plot is good but the acting is awful')).toBe(0);
    expect(label('the acting is awful but the plot is good')).toBe(3);
    expect(label('it is dull but charming')).toBe(3);
    // A neutral second clause leaves the first one, weakened.
    expect(label('it is superb but it is long')).toBe(3);
    let checked = 0;
    for (const tree of all) {
      for (const n of nodes(tree)) {
        if (isLeaf(n) || isLeaf(n.right) || !isLeaf(n.right.left) || n.right.left.word !== 'but') continue;
        const y = n.right.right;
        if (y.label === 2) continue;
        expect(sign(n.label)).toBe(sign(y.label));
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(500);
  });

  it('coordination reinforces agreeing parts and weighs opposing ones', () => {
    expect(label('it is fine and it is ok')).toBe(3);
    expect(label('it is good and it is nice')).toBe(4);
    expect(label('it is bad and boring')).toBe(0);
    expect(label('it is good and it is awful')).toBe(1);
    expect(label('it is great and it is bad')).toBe(3);
    expect(label('it is good and it is long')).toBe(3);
  });

  it('rejects text outside the language', () => {
    expect(() => syntheticTree('the movie is')).toThrow(SyntaxError);
    expect(() => syntheticTree('the movie is gorgeous')).toThrow(/gorgeous/);
    expect(() => syntheticTree('it is a awful film')).toThrow(/"an" before "awful"/);
    expect(() => syntheticTree('it is good but')).toThrow(SyntaxError);
    expect(() => syntheticTree('')).toThrow(SyntaxError);
  });

  it('agrees with the generator: reparsing a generated sentence gives the same tree', () => {
    for (const tree of splits.dev) expect(formatTree(syntheticTree(text(tree)))).toBe(formatTree(tree));
  });
});

describe('syntheticSplits', () => {
  it('has the documented sizes, and train is the seed\'s treebank', () => {
    expect(splits.train).toHaveLength(SYNTHETIC_SPLIT_SIZES.train);
    expect(splits.dev).toHaveLength(SYNTHETIC_SPLIT_SIZES.dev);
    expect(splits.test).toHaveLength(SYNTHETIC_SPLIT_SIZES.test);
    expect(splits.train.map((t) => formatTree(t))).toEqual(
      syntheticTreebank({ sentences: SYNTHETIC_SPLIT_SIZES.train, seed: 1 }).map((t) => formatTree(t)),
    );
  });

  it('keeps dev and test sentences out of train by a large majority', () => {
    // The language is small, so a few short sentences recur; held-out scores stay meaningful if they are rare.
    const train = new Set(splits.train.map(text));
    for (const held of [splits.dev, splits.test]) {
      const seen = held.filter((t) => train.has(text(t))).length;
      expect(seen / held.length).toBeLessThan(0.05);
    }
    const dev = new Set(splits.dev.map(text));
    expect(splits.test.filter((t) => dev.has(text(t))).length / splits.test.length).toBeLessThan(0.05);
  });

  it('is deterministic in the seed', () => {
    const again = syntheticSplits(1);
    expect(again.test.map((t) => formatTree(t))).toEqual(splits.test.map((t) => formatTree(t)));
    const other = syntheticSplits(2);
    expect(other.test.map((t) => formatTree(t))).not.toEqual(splits.test.map((t) => formatTree(t)));
  });
});
