import type { TreeNode } from './tree';
import { leaves } from './tree';

/** CoreNLP's spelling of the unknown word; DESIGN.md makes it part of the model-file contract. */
export const UNKNOWN_WORD = '*UNK*';

/**
 * Maps words to the row of L that holds their vector. Words are taken verbatim
 * (no case folding, no unescaping), as the tree contract says.
 */
export class Vocabulary {
  readonly words: readonly string[];
  /** Id that unseen words map to: the `*UNK*` entry, or 0 when there is none (DESIGN.md). */
  readonly unknownId: number;
  private readonly ids: Map<string, number>;

  constructor(words: readonly string[]) {
    if (words.length === 0) throw new RangeError('a vocabulary needs at least one word');
    const ids = new Map<string, number>();
    // An indexed loop, not forEach: forEach skips the holes of a sparse array,
    // which would let `undefined` entries through into `words`.
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      if (typeof w !== 'string') throw new TypeError(`vocabulary entry ${i} is not a string`);
      if (ids.has(w)) throw new RangeError(`vocabulary entry ${i} repeats the word ${JSON.stringify(w)}`);
      ids.set(w, i);
    }
    this.words = Object.freeze([...words]);
    this.ids = ids;
    this.unknownId = ids.get(UNKNOWN_WORD) ?? 0;
  }

  /**
   * The vocabulary of a training set: `*UNK*` first (id 0), then every word
   * seen at least `minCount` times, in order of first appearance so that the
   * same trees always give the same ids.
   */
  static fromTrees(trees: Iterable<TreeNode>, minCount = 1): Vocabulary {
    // NaN would compare false with every count and leave only *UNK*.
    if (!(Number.isInteger(minCount) && minCount >= 0)) throw new RangeError(`minCount must be an integer >= 0, got ${minCount}`);
    const counts = new Map<string, number>();
    for (const tree of trees) {
      for (const leaf of leaves(tree)) counts.set(leaf.word, (counts.get(leaf.word) ?? 0) + 1);
    }
    const words = [UNKNOWN_WORD];
    for (const [word, count] of counts) {
      if (count >= minCount && word !== UNKNOWN_WORD) words.push(word);
    }
    return new Vocabulary(words);
  }

  get size(): number {
    return this.words.length;
  }

  has(word: string): boolean {
    return this.ids.has(word);
  }

  /** The id of `word`, or {@link unknownId} when the vocabulary does not hold it. */
  id(word: string): number {
    return this.ids.get(word) ?? this.unknownId;
  }
}
