/**
 * A tiny sentiment language that rntn can generate its own treebank from, so
 * that `rntn train` without `--train` has something to learn from in seconds
 * and without the Stanford Sentiment Treebank (which the package must not
 * need). The trees have SST's form: binary, every node labelled 0 (very
 * negative) … 4 (very positive), words at the leaves.
 *
 * The language is built so that a bag of words cannot solve it: the same word
 * pushes in opposite directions depending on what it attaches to ("very good"
 * vs "very bad", "not good" vs "not bad"), does nothing to neutral words
 * ("very long"), and word order decides ("X is good but Y is awful" and
 * "Y is awful but X is good" have the same words and opposite labels). That
 * is the composition the RNTN's tensor is there to model.
 *
 * Grammar (a sentence is one to three clauses joined by "and" / "but"):
 *
 *     Sentence  := Clause (Conj Clause)*
 *     Clause    := Subject Copula Pred
 *     Subject   := "it" | Det Noun | Det NeutralAdj Noun          (the plot, this new film)
 *     Pred      := Atom (Conj Atom)*                              (dull but charming)
 *     Atom      := [Neg] (AdjP | Nominal)                         (not very good, never a joy)
 *     AdjP      := [Intensifier] Adj                              (really awful)
 *     Nominal   := Article PolarNoun | Article AdjP NeutralNoun   (a mess, a very good film)
 *
 * The article agrees with the next word ("an awful film"). After a
 * conjunction, a subject-starting word ("it", "the", "this", "that") opens a
 * new clause; anything else continues the predicate.
 *
 * Labelling. Every node carries a score σ in −4 … 4, and its label is
 *
 *     σ ≤ −3 → 0,  σ ∈ {−2, −1} → 1,  σ = 0 → 2,  σ ∈ {1, 2} → 3,  σ ≥ 3 → 4.
 *
 * The score is finer than the label on purpose: "great" and "good" are both
 * positive, but negation and coordination treat them differently, so a
 * model has to keep more in its vectors than the five-way label.
 *
 * | construction        | binarised as          | score σ                                                   |
 * |---------------------|-----------------------|-----------------------------------------------------------|
 * | word                | leaf                  | strong ±3 (superb, awful), plain ±2 (good, bad), mild ±1 (fine, dull); all other words 0 |
 * | Det Noun            | (Det Noun)            | 0                                                         |
 * | Det NeutralAdj Noun | (Det (Adj Noun))      | 0                                                         |
 * | Intensifier Adj     | (Int Adj)             | clamp(2·σ_Adj): doubles toward the extreme, neutral stays 0 |
 * | Article PolarNoun   | (a Noun)              | σ_Noun                                                    |
 * | Article AdjP Noun   | (a (AdjP Noun))       | σ_AdjP (the neutral noun takes its modifier's sentiment)  |
 * | Neg X               | (Neg X)               | −sign(σ_X)·⌈\|σ_X\|/2⌉: flips and dampens                 |
 * | Copula Pred         | (Cop Pred)            | σ_Pred                                                    |
 * | Subject VP          | (Subject VP)          | σ_VP (subjects are neutral)                               |
 * | Conj Y              | (Conj Y)              | σ_Y                                                       |
 * | X and Y             | (X (and Y))           | same signs: sign·min(4, max(\|σ_X\|, \|σ_Y\|) + 1); otherwise σ_X + σ_Y |
 * | X but Y             | (X (but Y))           | σ_Y when σ_Y ≠ 0, else sign(σ_X)·⌈\|σ_X\|/2⌉              |
 *
 * Longer chains nest to the left: "X and Y but Z" is ((X (and Y)) (but Z)).
 *
 * Negation follows what Socher et al. observed in SST: it flips and weakens,
 * and never reaches the extremes, so "not good" is negative (1), "not bad"
 * mildly positive (3), "not very good" negative but not very negative (1).
 * Contrast follows the clause after "but": the speaker's point comes last.
 *
 * Sentences are drawn independently, so a small language repeats some short
 * sentences within and across splits; the splits are disjoint streams of one
 * generator, not deduplicated.
 */
import type { InternalNode, LeafNode, TreeNode } from './tree';
import { Random } from './random';

export interface SyntheticOptions {
  /** How many sentences (trees). Default 2000. */
  sentences?: number;
  /** Seed of the generator; the same seed gives the same trees. Default 1. */
  seed?: number;
}

// ---------------------------------------------------------------------------
// Lexicon

const DETERMINERS = ['the', 'this', 'that'] as const;
const ARTICLES = ['a', 'an'] as const;
const PRONOUN = 'it';
const SUBJECT_NOUNS = [
  'movie', 'film', 'plot', 'acting', 'script', 'dialogue', 'ending', 'cast',
  'soundtrack', 'direction', 'story', 'pacing', 'cinematography', 'premise',
] as const;
/** Nouns that take their sentiment from a modifier: "a very good film". */
const NEUTRAL_NOUNS = ['film', 'movie', 'story', 'ride', 'effort', 'experience'] as const;
const COPULAS = ['is', 'was', 'seems'] as const;
/** "seems a mess" is awkward English, so nominal predicates take only these. */
const NOMINAL_COPULAS = ['is', 'was'] as const;
const INTENSIFIERS = ['very', 'really', 'truly', 'extremely', 'so'] as const;
const NEGATORS = ['not', 'never'] as const;
const CONJUNCTIONS = ['and', 'but'] as const;

/** Adjectives by score; index 0 holds σ = −3, index 6 holds σ = +3. */
const ADJECTIVES: readonly (readonly string[])[] = [
  ['awful', 'terrible', 'dreadful', 'horrible'],
  ['bad', 'boring', 'poor', 'silly'],
  ['dull', 'weak', 'bland'],
  ['long', 'short', 'new', 'old', 'french', 'animated'],
  ['fine', 'ok', 'decent'],
  ['good', 'nice', 'enjoyable', 'charming', 'funny'],
  ['great', 'superb', 'brilliant', 'wonderful', 'excellent'],
];
const NEUTRAL_ADJECTIVES = ADJECTIVES[3]!;

/** Nouns that carry sentiment of their own: "a mess", "a masterpiece". */
const POLAR_NOUNS: readonly (readonly [string, number])[] = [
  ['disaster', -3], ['failure', -3],
  ['mess', -2], ['bore', -2], ['letdown', -2],
  ['joy', 2], ['treat', 2], ['delight', 2],
  ['masterpiece', 3], ['triumph', 3], ['gem', 3],
];

/** Lexical scores; words missing here score 0. */
const WORD_SCORE = new Map<string, number>();
ADJECTIVES.forEach((words, i) => {
  for (const w of words) WORD_SCORE.set(w, i - 3);
});
for (const [w, s] of POLAR_NOUNS) WORD_SCORE.set(w, s);

const ADJECTIVE_SET = new Set(ADJECTIVES.flat());
const NEUTRAL_ADJECTIVE_SET = new Set<string>(NEUTRAL_ADJECTIVES);
const POLAR_NOUN_SET = new Set(POLAR_NOUNS.map(([w]) => w));

export const SYNTHETIC_VOCABULARY: readonly string[] = Object.freeze(
  [
    ...new Set<string>([
      PRONOUN,
      ...DETERMINERS,
      ...ARTICLES,
      ...SUBJECT_NOUNS,
      ...NEUTRAL_NOUNS,
      ...COPULAS,
      ...INTENSIFIERS,
      ...NEGATORS,
      ...CONJUNCTIONS,
      ...ADJECTIVES.flat(),
      ...POLAR_NOUNS.map(([w]) => w),
    ]),
  ].sort(),
);

// ---------------------------------------------------------------------------
// The rule table

const MAX_SCORE = 4;

function clamp(s: number): number {
  return Math.max(-MAX_SCORE, Math.min(MAX_SCORE, s));
}

/** Five labels from nine scores: extremes need a strong word or reinforcement. */
function labelOf(score: number): number {
  if (score <= -3) return 0;
  if (score < 0) return 1;
  if (score === 0) return 2;
  if (score < 3) return 3;
  return 4;
}

function halve(s: number): number {
  return Math.sign(s) * Math.ceil(Math.abs(s) / 2);
}

function intensify(s: number): number {
  return clamp(2 * s);
}

function negate(s: number): number {
  return -halve(s);
}

function coordinate(conj: string, x: number, y: number): number {
  if (conj === 'but') return y !== 0 ? y : halve(x);
  if (x * y > 0) return Math.sign(x) * Math.min(MAX_SCORE, Math.max(Math.abs(x), Math.abs(y)) + 1);
  return clamp(x + y);
}

// ---------------------------------------------------------------------------
// Parsing a sentence of the language into its labelled tree

/** A subtree with the score its label came from (parents need the finer score). */
interface Scored {
  node: TreeNode;
  score: number;
}

function leaf(word: string): Scored {
  const score = WORD_SCORE.get(word) ?? 0;
  const node: LeafNode = { label: labelOf(score), word };
  return { node, score };
}

function join(left: Scored, right: Scored, score: number): Scored {
  const node: InternalNode = { label: labelOf(score), left: left.node, right: right.node };
  return { node, score };
}

function isIn(set: readonly string[] | ReadonlySet<string>, word: string | undefined): boolean {
  if (word === undefined) return false;
  return set instanceof Set ? set.has(word) : (set as readonly string[]).includes(word);
}

function startsSubject(word: string | undefined): boolean {
  return word === PRONOUN || isIn(DETERMINERS, word);
}

function articleFor(word: string): 'a' | 'an' {
  return /^[aeiou]/.test(word) ? 'an' : 'a';
}

class SentenceParser {
  private pos = 0;

  constructor(
    private readonly words: readonly string[],
    private readonly text: string,
  ) {}

  parse(): TreeNode {
    let sentence = this.clause();
    while (this.pos < this.words.length) {
      const conj = this.take(CONJUNCTIONS, '"and" or "but" (or the end of the sentence)');
      if (!startsSubject(this.peek())) this.fail('a clause ("it", "the", "this" or "that" …)');
      const right = this.clause();
      sentence = join(sentence, join(leaf(conj), right, right.score), coordinate(conj, sentence.score, right.score));
    }
    return sentence.node;
  }

  private clause(): Scored {
    const subject = this.subject();
    const cop = leaf(this.take(COPULAS, 'a copula ("is", "was", "seems")'));
    const pred = this.predicate();
    const vp = join(cop, pred, pred.score);
    return join(subject, vp, vp.score);
  }

  private subject(): Scored {
    if (this.peek() === PRONOUN) return leaf(this.next());
    const det = leaf(this.take(DETERMINERS, 'a subject ("it", "the", "this" or "that")'));
    let noun: Scored;
    if (isIn(NEUTRAL_ADJECTIVE_SET, this.peek())) {
      const adj = leaf(this.next());
      noun = join(adj, leaf(this.take(SUBJECT_NOUNS, 'a subject noun')), 0);
    } else {
      noun = leaf(this.take(SUBJECT_NOUNS, 'a subject noun or a neutral adjective'));
    }
    return join(det, noun, 0);
  }

  private predicate(): Scored {
    let pred = this.atom();
    // A conjunction followed by a subject belongs to the sentence, not the predicate.
    while (isIn(CONJUNCTIONS, this.peek()) && !startsSubject(this.peek(1))) {
      const conj = this.next();
      const right = this.atom();
      pred = join(pred, join(leaf(conj), right, right.score), coordinate(conj, pred.score, right.score));
    }
    return pred;
  }

  private atom(): Scored {
    if (isIn(NEGATORS, this.peek())) {
      const neg = leaf(this.next());
      const core = this.core();
      return join(neg, core, negate(core.score));
    }
    return this.core();
  }

  private core(): Scored {
    if (!isIn(ARTICLES, this.peek())) return this.adjectivePhrase();
    const article = this.next();
    const following = this.peek();
    if (following !== undefined && articleFor(following) !== article) {
      this.fail(`"${articleFor(following)}" before "${following}"`, this.pos - 1);
    }
    if (isIn(POLAR_NOUN_SET, following)) {
      const noun = leaf(this.next());
      return join(leaf(article), noun, noun.score);
    }
    const adjp = this.adjectivePhrase();
    const nbar = join(adjp, leaf(this.take(NEUTRAL_NOUNS, 'a noun after the adjective')), adjp.score);
    return join(leaf(article), nbar, nbar.score);
  }

  private adjectivePhrase(): Scored {
    if (isIn(INTENSIFIERS, this.peek())) {
      const int = leaf(this.next());
      const adj = leaf(this.take(ADJECTIVE_SET, 'an adjective after the intensifier'));
      return join(int, adj, intensify(adj.score));
    }
    return leaf(this.take(ADJECTIVE_SET, 'an adjective, an intensifier, "not"/"never" or "a"/"an"'));
  }

  private peek(ahead = 0): string | undefined {
    return this.words[this.pos + ahead];
  }

  private next(): string {
    return this.words[this.pos++]!;
  }

  private take(set: readonly string[] | ReadonlySet<string>, expected: string): string {
    if (!isIn(set, this.peek())) this.fail(expected);
    return this.next();
  }

  private fail(expected: string, at = this.pos): never {
    const found = at < this.words.length ? `"${this.words[at]}" (word ${at + 1})` : 'the end of the sentence';
    throw new SyntaxError(`not a sentence of the synthetic language: expected ${expected}, found ${found} in "${this.text}"`);
  }
}

/**
 * The labelled, binarised tree of one sentence of the language, e.g.
 * `syntheticTree('the plot is not very good but the acting is superb')`.
 * Throws a SyntaxError for text outside the language. The generator builds
 * every tree through this, so what it emits and what this returns agree.
 */
export function syntheticTree(sentence: string): TreeNode {
  if (typeof sentence !== 'string') throw new TypeError('syntheticTree expects a string');
  const words = sentence.split(/[ \t\n\r\f\v]+/).filter((w) => w.length > 0);
  if (words.length === 0) throw new SyntaxError('not a sentence of the synthetic language: it is empty');
  return new SentenceParser(words, words.join(' ')).parse();
}

// ---------------------------------------------------------------------------
// Generation

function pick<T>(rng: Random, items: readonly T[]): T {
  return items[rng.int(items.length)]!;
}

// Strength first, then the word, so that classes with more synonyms are not
// more frequent; neutral adjectives are rarer because the negation,
// intensifier and contrast rules have nothing to show on them.
function adjective(rng: Random): string {
  const r = rng.next();
  const strength = r < 0.1 ? 3 : [0, 1, 2, 4, 5, 6][Math.floor(((r - 0.1) / 0.9) * 6)]!;
  return pick(rng, ADJECTIVES[strength]!);
}

function adjectivePhrase(rng: Random, out: string[]): void {
  if (rng.next() < 0.3) out.push(pick(rng, INTENSIFIERS));
  out.push(adjective(rng));
}

function atom(rng: Random, nominal: boolean, out: string[]): void {
  if (rng.next() < 0.3) out.push(pick(rng, NEGATORS));
  if (!nominal) {
    adjectivePhrase(rng, out);
    return;
  }
  const phrase: string[] = [];
  if (rng.next() < 0.5) {
    phrase.push(pick(rng, POLAR_NOUNS)[0]);
  } else {
    adjectivePhrase(rng, phrase);
    phrase.push(pick(rng, NEUTRAL_NOUNS));
  }
  out.push(articleFor(phrase[0]!), ...phrase);
}

function clause(rng: Random, out: string[]): void {
  const r = rng.next();
  if (r < 0.1) {
    out.push(PRONOUN);
  } else {
    // "the" dominates as in real text; the others add variety the model must learn is neutral.
    out.push(rng.next() < 0.7 ? 'the' : pick(rng, DETERMINERS.slice(1)));
    if (r > 0.8) out.push(pick(rng, NEUTRAL_ADJECTIVES));
    out.push(pick(rng, SUBJECT_NOUNS));
  }
  const nominal = rng.next() < 0.2;
  out.push(pick(rng, nominal ? NOMINAL_COPULAS : COPULAS));
  atom(rng, nominal, out);
  if (!nominal && rng.next() < 0.2) {
    out.push(pick(rng, CONJUNCTIONS));
    atom(rng, false, out);
  }
}

function sentence(rng: Random): string {
  const r = rng.next();
  const clauses = r < 0.45 ? 1 : r < 0.85 ? 2 : 3;
  const words: string[] = [];
  for (let i = 0; i < clauses; i++) {
    if (i > 0) words.push(pick(rng, CONJUNCTIONS));
    clause(rng, words);
  }
  return words.join(' ');
}

function generate(rng: Random, count: number): TreeNode[] {
  const trees: TreeNode[] = [];
  for (let i = 0; i < count; i++) trees.push(syntheticTree(sentence(rng)));
  return trees;
}

function checkCount(sentences: number): void {
  if (!Number.isSafeInteger(sentences) || sentences < 0) {
    throw new RangeError(`sentences must be a non-negative integer, got ${String(sentences)}`);
  }
}

/** `sentences` trees of the language, the same ones for the same seed. */
export function syntheticTreebank(options?: SyntheticOptions): TreeNode[] {
  const sentences = options?.sentences ?? 2000;
  checkCount(sentences);
  return generate(new Random(options?.seed ?? 1), sentences);
}

export const SYNTHETIC_SPLIT_SIZES = Object.freeze({ train: 2000, dev: 300, test: 300 });

/**
 * Train, dev and test as consecutive stretches of one generator's stream, so
 * that `train` equals `syntheticTreebank({ sentences: 2000, seed })` and the
 * three never share a draw. They are not deduplicated: with seed 1, 8 of the
 * 600 dev/test sentences also occur in train (short sentences of a small
 * language repeat).
 */
export function syntheticSplits(seed = 1): { train: TreeNode[]; dev: TreeNode[]; test: TreeNode[] } {
  const rng = new Random(seed);
  const train = generate(rng, SYNTHETIC_SPLIT_SIZES.train);
  const dev = generate(rng, SYNTHETIC_SPLIT_SIZES.dev);
  const test = generate(rng, SYNTHETIC_SPLIT_SIZES.test);
  return { train, dev, test };
}

/**
 * Random binary trees with random labels over `words` — no language, just
 * shapes for gradient checks and tests: each node splits its leaf span at a
 * random point, so both deep chains and balanced trees occur.
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
