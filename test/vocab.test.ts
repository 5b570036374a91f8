import { describe, it, expect } from 'vitest';
import { parseTrees } from '../src/tree';
import { UNKNOWN_WORD, Vocabulary } from '../src/vocab';

const trees = parseTrees(
  [
    '(3 (2 the) (4 (2 good) (2 film)))',
    '(1 (2 the) (1 (2 bad) (2 The)))',
    '(2 (2 8\u00a01\\/2) (2 film))',
  ].join('\n'),
);

describe('Vocabulary.fromTrees', () => {
  it('puts *UNK* at id 0 and numbers words in order of first appearance', () => {
    const vocab = Vocabulary.fromTrees(trees);
    expect(UNKNOWN_WORD).toBe('*UNK*');
    // Case is kept and the non-breaking-space token is one word: tokens are verbatim.
    expect(vocab.words).toEqual([UNKNOWN_WORD, 'the', 'good', 'film', 'bad', 'The', '8\u00a01\\/2']);
    expect(vocab.size).toBe(7);
    expect(vocab.unknownId).toBe(0);
    expect(vocab.id('the')).toBe(1);
    expect(vocab.id('The')).toBe(5);
    expect(vocab.id('8\u00a01\\/2')).toBe(6);
  });

  it('maps unknown words to the *UNK* id', () => {
    const vocab = Vocabulary.fromTrees(trees);
    expect(vocab.has('movie')).toBe(false);
    expect(vocab.id('movie')).toBe(0);
    expect(vocab.id('THE')).toBe(0);
    expect(vocab.id('8')).toBe(0);
  });

  it('keeps only words seen at least minCount times, still in first-appearance order', () => {
    const vocab = Vocabulary.fromTrees(trees, 2);
    expect(vocab.words).toEqual([UNKNOWN_WORD, 'the', 'film']);
    expect(vocab.id('good')).toBe(0);
    expect(vocab.id('film')).toBe(2);
    expect(Vocabulary.fromTrees(trees, 3).words).toEqual([UNKNOWN_WORD]);
    // NaN compares false with every count: it would leave *UNK* alone, silently.
    expect(() => Vocabulary.fromTrees(trees, NaN)).toThrow(/minCount must be an integer >= 0, got NaN/);
    expect(() => Vocabulary.fromTrees(trees, -1)).toThrow(/minCount must be an integer >= 0, got -1/);
  });

  it('does not repeat *UNK* when the trees contain it as a word', () => {
    const vocab = Vocabulary.fromTrees(parseTrees('(2 (2 a) (2 *UNK*))'));
    expect(vocab.words).toEqual([UNKNOWN_WORD, 'a']);
  });

  it('accepts any iterable of trees', () => {
    function* gen() {
      yield* trees;
    }
    expect(Vocabulary.fromTrees(gen()).size).toBe(7);
  });
});

describe('Vocabulary constructor', () => {
  it('maps unknown words to 0 when the vocabulary has no *UNK*', () => {
    const vocab = new Vocabulary(['a', 'b', 'c']);
    expect(vocab.unknownId).toBe(0);
    expect(vocab.id('c')).toBe(2);
    expect(vocab.id('zzz')).toBe(0);
  });

  it('maps unknown words to *UNK* wherever it sits', () => {
    const vocab = new Vocabulary(['a', UNKNOWN_WORD, 'b']);
    expect(vocab.unknownId).toBe(1);
    expect(vocab.id('zzz')).toBe(1);
    expect(vocab.id('a')).toBe(0);
  });

  it('throws on duplicate words', () => {
    expect(() => new Vocabulary(['a', 'b', 'a'])).toThrow(/entry 2 repeats the word "a"/);
  });

  it('throws on an empty list and on non-string entries, holes included', () => {
    expect(() => new Vocabulary([])).toThrow(RangeError);
    expect(() => new Vocabulary(['a', 3 as unknown as string])).toThrow(TypeError);
    // A hole, not undefined: forEach would skip it, so the constructor must index.
    expect(() => new Vocabulary(['a', , 'b'] as string[])).toThrow(/entry 1 is not a string/);
  });

  it('copies its input so later changes to the array do not leak in', () => {
    const words = ['a', 'b'];
    const vocab = new Vocabulary(words);
    words.push('c');
    words[0] = 'z';
    expect(vocab.words).toEqual(['a', 'b']);
    expect(vocab.id('a')).toBe(0);
  });
});
