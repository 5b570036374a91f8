'use strict';
/**
 * Case generators for the tree-reader and model-loader fuzzers.
 *
 * Plain CommonJS so that one copy serves both `test/fuzz/run.js` (which hands
 * it the compiled `lib/` modules) and `test/fuzz.test.ts` (which hands it the
 * `src/` modules through vitest). Nothing here imports rntn itself: the
 * caller passes an `api` object, see `oracle.js`.
 *
 * Every case is a pure function of (seed, kind, index), so any case can be
 * regenerated on its own to replay a failure: see `caseRandom`.
 */
const fs = require('node:fs');
const path = require('node:path');

// ---------------------------------------------------------------------------
// Seeding

function mix32(h) {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const STREAMS = { tree: 1, model: 2, pool: 3 };

/**
 * The generator of case `index` of `kind`. Random's numeric seed keeps only
 * 32 bits, so distinct (seed, kind, index) could share a stream; a full
 * four-word state built from bijective mixes of each part cannot.
 */
function caseRandom(api, seed, kind, index) {
  const stream = STREAMS[kind];
  if (stream === undefined) throw new RangeError(`unknown stream ${kind}`);
  const state = Uint32Array.of(
    mix32((seed >>> 0) ^ 0x243f6a88),
    mix32(Math.floor(seed / 2 ** 32) ^ 0x85a308d3),
    mix32((index >>> 0) ^ 0x13198a2e),
    mix32(stream ^ 0x03707344),
  );
  if (state.every((w) => w === 0)) state[0] = 1;
  const rng = new api.random.Random(state);
  // xoshiro's first outputs depend on one word of the state (here the seed's high half, the same for every case); a few steps mix in the rest.
  for (let i = 0; i < 16; i++) rng.nextUint32();
  return rng;
}

const pick = (rng, items) => items[rng.int(items.length)];
const chance = (rng, p) => rng.next() < p;
/** Integer in [lo, hi], log-uniform so that small and huge sizes both occur. */
function logInt(rng, lo, hi) {
  return Math.min(hi, Math.floor(Math.exp(Math.log(lo) + rng.next() * (Math.log(hi + 1) - Math.log(lo)))));
}

function weightedPick(rng, table) {
  let total = 0;
  for (const [, w] of table) total += w;
  let r = rng.next() * total;
  for (const [name, w] of table) {
    r -= w;
    if (r < 0) return name;
  }
  return table[table.length - 1][0];
}

// ---------------------------------------------------------------------------
// The tree corpus

/**
 * Real SST lines when the treebank sits beside the project; otherwise lines
 * from the synthetic generator, and `source` says so.
 */
function loadTreeCorpus(api, projectRoot) {
  const file = path.resolve(projectRoot, '../shared/data/sst/train.txt');
  if (fs.existsSync(file)) {
    const lines = fs.readFileSync(file, 'utf8').split('\n').map((l) => l.replace(/\r$/, '')).filter((l) => l.trim() !== '');
    return { lines, source: file, synthetic: false };
  }
  const trees = api.synthetic.syntheticTreebank({ sentences: 2000, seed: 1 });
  return { lines: trees.map((t) => api.tree.formatTree(t)), source: `${file} not found; 2000 lines from src/synthetic.ts`, synthetic: true };
}

/** Node spans of a well-formed line (words never hold parentheses, so matching them is enough). */
function nodeSpans(line) {
  const nodes = [];
  const stack = [];
  for (let i = 0; i < line.length; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x28) {
      stack.push(nodes.length);
      nodes.push({ open: i, close: -1, leaf: true });
    } else if (c === 0x29 && stack.length > 0) {
      nodes[stack.pop()].close = i;
      if (stack.length > 0) nodes[stack[stack.length - 1]].leaf = false;
    }
  }
  return nodes.filter((n) => n.close >= 0);
}

function positionsOf(line, chars) {
  const out = [];
  for (let i = 0; i < line.length; i++) if (chars.includes(line[i])) out.push(i);
  return out;
}

const splice = (s, at, remove, insert) => s.slice(0, at) + insert + s.slice(at + remove);

/** Pieces that mean something to the grammar or to the decoder, for insertions. */
const INTERESTING = [
  '(', ')', '(', ')', ' ', '  ', '\t', '\n', '\r', '\r\n', '\v', '\f', '0', '1', '4', '5', '9', '10', '-1',
  'a', 'word', '\u00a0', '\u2028', '\u0085', '\ufeff', '\u3000', '😀', 'é', '\0', '-LRB-', '\\/', '"', '\\',
];
/** Only in string cases: a lone surrogate cannot be written as UTF-8. */
const LONE_SURROGATES = ['\ud800', '\udfff', '\udc00x', 'x\ud83d'];

function randomWord(rng, corpusLine) {
  const words = corpusLine.match(/[^\s()]+/g) ?? ['w'];
  return pick(rng, words);
}

function smallLabel(rng, classes) {
  return rng.int(Math.max(1, Math.min(classes, 10)));
}

// ---------------------------------------------------------------------------
// Tree mutations: each takes a well-formed line and returns a string

const treeMutators = {
  dropParen(rng, line) {
    const ps = positionsOf(line, '()');
    const k = 1 + rng.int(3);
    for (let i = 0; i < k && ps.length > 0; i++) {
      const at = ps.splice(rng.int(ps.length), 1)[0];
      line = splice(line, at, 1, '');
      for (let j = 0; j < ps.length; j++) if (ps[j] > at) ps[j]--;
    }
    return line;
  },
  duplicateParen(rng, line) {
    const k = 1 + rng.int(3);
    for (let i = 0; i < k; i++) {
      const ps = positionsOf(line, '()');
      if (ps.length === 0 || chance(rng, 0.3)) line = splice(line, rng.int(line.length + 1), 0, pick(rng, ['(', ')']));
      else {
        const at = pick(rng, ps);
        line = splice(line, at, 0, line[at].repeat(1 + rng.int(2)));
      }
    }
    return line;
  },
  swapParen(rng, line) {
    const opens = positionsOf(line, '(');
    const closes = positionsOf(line, ')');
    if (opens.length === 0 || closes.length === 0) return line;
    const r = rng.int(3);
    if (r === 0) {
      // Exchange a "(" and a ")".
      const a = pick(rng, opens);
      const b = pick(rng, closes);
      return splice(splice(line, a, 1, ')'), b, 1, '(');
    }
    if (r === 1) {
      // Move a parenthesis a few places, e.g. "a)" -> ")a".
      const at = pick(rng, [...opens, ...closes]);
      const c = line[at];
      const without = splice(line, at, 1, '');
      const to = Math.max(0, Math.min(without.length, at + rng.int(9) - 4));
      return splice(without, to, 0, c);
    }
    // Swap two subtrees (often still well formed: the reference decides).
    const nodes = nodeSpans(line);
    if (nodes.length < 2) return line;
    const x = pick(rng, nodes);
    const y = pick(rng, nodes);
    if (x === y || (x.open < y.open && y.close < x.close) || (y.open < x.open && x.close < y.close)) return line;
    const [p, q] = x.open < y.open ? [x, y] : [y, x];
    return line.slice(0, p.open) + line.slice(q.open, q.close + 1) + line.slice(p.close + 1, q.open) + line.slice(p.open, p.close + 1) + line.slice(q.close + 1);
  },
  label(rng, line, ctx) {
    const nodes = nodeSpans(line);
    if (nodes.length === 0) return line;
    const k = 1 + rng.int(2);
    for (let i = 0; i < k; i++) {
      const spans = nodeSpans(line);
      if (spans.length === 0) break;
      const at = pick(rng, spans).open + 1;
      let end = at;
      while (end < line.length && !/[\s()]/.test(line[end])) end++;
      const label = pick(rng, [
        String(ctx.classes), String(ctx.classes + rng.int(5)), '9', '10', '99', '-1', '+1', '1.0', '1e0', '0x1', '', 'a', '2a',
        '٣', '２', ' 2', '2\u00a0', '02', '0'.repeat(1 + rng.int(600)) + '3', '9'.repeat(1 + rng.int(400)),
        '4294967296', '9007199254740993', 'NaN', 'Infinity', '1_0', '²',
      ]);
      line = splice(line, at, end - at, label);
    }
    return line;
  },
  nonBinary(rng, line, ctx) {
    const nodes = nodeSpans(line);
    if (nodes.length === 0) return line;
    const node = pick(rng, nodes);
    const w = randomWord(rng, line);
    const l = smallLabel(rng, ctx.classes);
    switch (rng.int(5)) {
      case 0: // a third subtree, or a word followed by a subtree
        return splice(line, node.close, 0, ` (${l} ${w})`);
      case 1: // two words in a leaf, or a word after two subtrees
        return splice(line, node.close, 0, ` ${w}`);
      case 2: { // drop one child: a unary node
        const kids = nodes.filter((n) => n.open > node.open && n.close < node.close);
        const child = kids.length > 0 ? pick(rng, kids) : null;
        return child ? splice(line, child.open, child.close - child.open + 1, '') : splice(line, node.open, 0, '');
      }
      case 3: // an empty node
        return splice(line, node.open, node.close - node.open + 1, `(${l} )`);
      default: // a node holding a word and two subtrees
        return splice(line, node.close, 0, ` (${l} ${w}) (${l} ${w})`);
    }
  },
  unary(rng, line, ctx) {
    const nodes = nodeSpans(line);
    if (nodes.length === 0) return line;
    const node = chance(rng, 0.2) ? nodes[0] : pick(rng, nodes);
    const depth = 1 + rng.int(5);
    let prefix = '';
    for (let i = 0; i < depth; i++) prefix += `(${smallLabel(rng, ctx.classes)} `;
    return line.slice(0, node.open) + prefix + line.slice(node.open, node.close + 1) + ')'.repeat(depth) + line.slice(node.close + 1);
  },
  nul(rng, line) {
    const k = 1 + rng.int(3);
    for (let i = 0; i < k; i++) {
      const spaces = positionsOf(line, ' ');
      if (spaces.length > 0 && chance(rng, 0.3)) line = splice(line, pick(rng, spaces), 1, '\0');
      else line = splice(line, rng.int(line.length + 1), 0, '\0'.repeat(1 + rng.int(2)));
    }
    return line;
  },
  longToken(rng, line) {
    const n = logInt(rng, 1000, 1_000_000);
    const fill = pick(rng, ['a', 'é', '😀', '\u00a0', 'ab\u2028', '7', '-']);
    const token = fill.repeat(Math.ceil(n / fill.length));
    const nodes = nodeSpans(line);
    const node = nodes.length > 0 ? pick(rng, nodes) : { open: 0, close: line.length - 1, leaf: true };
    switch (rng.int(6)) {
      case 4: // a long token where the error is reported, so that "found" must cut it (off by one unit half the time)
        return `(2 a) ${chance(rng, 0.5) ? 'x' : ''}${token}`;
      case 5:
        return `(${chance(rng, 0.5) ? 'x' : ''}${token} a)`;
      case 0: { // a long word
        const leaves = nodes.filter((x) => x.leaf);
        const leaf = leaves.length > 0 ? pick(rng, leaves) : node;
        const space = line.indexOf(' ', leaf.open);
        return space > 0 && space < leaf.close ? splice(line, space + 1, leaf.close - space - 1, token) : line + token;
      }
      case 1: // a long label
        return splice(line, node.open + 1, 1, '1'.repeat(n));
      case 2: // long whitespace
        return splice(line, Math.max(0, line.indexOf(' ')), 1, pick(rng, [' ', '\t', '\r', ' \v\f']).repeat(n));
      default: // a long word with a NUL or a parenthesis near the end
        return `(2 ${token}${pick(rng, ['\0', '(', ')', ' ', ''])}x)`;
    }
  },
  havoc(rng, line, ctx) {
    const edits = 1 + rng.int(8);
    for (let i = 0; i < edits; i++) {
      const at = rng.int(line.length + 1);
      switch (rng.int(7)) {
        case 0:
          line = splice(line, at, 1, '');
          break;
        case 1:
          line = splice(line, at, 0, pick(rng, ctx.strings ? [...INTERESTING, ...LONE_SURROGATES] : INTERESTING));
          break;
        case 2:
          line = splice(line, at, 1, pick(rng, INTERESTING));
          break;
        case 3: { // duplicate a stretch
          const len = rng.int(40);
          line = splice(line, at, 0, line.slice(at, at + len));
          break;
        }
        case 4: // delete a stretch
          line = splice(line, at, rng.int(40), '');
          break;
        case 5: { // graft part of another corpus line
          const other = pick(rng, ctx.corpus);
          const from = rng.int(other.length);
          line = splice(line, at, 0, other.slice(from, from + rng.int(80)));
          break;
        }
        default: { // apply a structural mutator
          const m = pick(rng, ['dropParen', 'duplicateParen', 'swapParen', 'label', 'nonBinary', 'unary']);
          line = treeMutators[m](rng, line, ctx);
        }
      }
    }
    return line;
  },
};

/** A valid line with its spaces replaced by other runs of ASCII whitespace. */
function respace(rng, line) {
  return line.replace(/ /g, () => (chance(rng, 0.8) ? ' ' : pick(rng, ['  ', '\t', '\v', '\f', '\r', ' \t '])));
}

// ---------------------------------------------------------------------------
// Deep and degenerate inputs, independent of the corpus

const DEEP_SHAPES = ['left', 'right', 'zigzag', 'unclosed', 'opens', 'closes', 'unaryChain', 'brokenMiddle', 'extraClose'];

/**
 * Nesting `depth` deep: 100k-1M a third of the time (a second or more each),
 * otherwise log-uniform up to 100k. `maxDepth` lets the quick test profile stay fast.
 */
function deepCase(rng, ctx) {
  const max = ctx.maxDepth;
  const n = chance(rng, 0.3) ? Math.min(max, 100_000 + rng.int(900_001)) : logInt(rng, 1, Math.min(max, 100_000));
  const l = () => smallLabel(rng, ctx.classes);
  const shape = pick(rng, DEEP_SHAPES);
  const a = l();
  const b = l();
  switch (shape) {
    case 'left': // (a (a (a (b w) (b x)) (b x)) (b x)): valid, as deep as n
      return { shape, depth: n, text: `(${a} `.repeat(n) + `(${b} w)` + ` (${b} x))`.repeat(n) };
    case 'right':
      return { shape, depth: n, text: `(${a} (${b} w) `.repeat(n) + `(${b} x)` + ')'.repeat(n) };
    case 'zigzag': {
      // The deeper child alternates between left and right.
      const open = [];
      const close = [];
      for (let i = 0; i < n; i++) {
        open.push(i % 2 === 0 ? `(${a} ` : `(${a} (${b} w) `);
        close.push(i % 2 === 0 ? ` (${b} w))` : ')');
      }
      return { shape, depth: n, text: open.join('') + `(${b} x)` + close.reverse().join('') };
    }
    case 'unclosed': {
      const t = `(${a} `.repeat(n) + `(${b} w)` + ` (${b} x))`.repeat(n);
      return { shape, depth: n, text: t.slice(0, t.length - 1 - rng.int(Math.min(t.length - 1, 40))) };
    }
    case 'opens':
      return { shape, depth: n, text: pick(rng, ['(', `(${a} `, `(${a}`, '( ']).repeat(n) };
    case 'closes':
      return { shape, depth: n, text: `(${a} w)` + ')'.repeat(n) };
    case 'unaryChain':
      return { shape, depth: n, text: `(${a} `.repeat(n) + 'w' + ')'.repeat(n) };
    case 'extraClose':
      return { shape, depth: n, text: `(${a} `.repeat(n) + `(${b} w)` + ` (${b} x))`.repeat(n) + ')' };
    default: { // valid everywhere but one node halfway down
      const text = `(${a} `.repeat(n) + `(${b} w)` + ` (${b} x))`.repeat(n);
      const at = 3 * Math.floor(n / 2) + 1;
      return { shape, depth: n, text: splice(text, at, 1, pick(rng, ['9', '(', ')', '\0', 'x'])) };
    }
  }
}

const TINY_ALPHABET = ['(', ')', ' ', '0', '2', '4', '5', 'a', '\n', '\r', '\t', '(2 ', '(2 a)', '\0'];

function emptyishCase(rng) {
  if (chance(rng, 0.4)) {
    return pick(rng, [
      '', ' ', '\n', '\r\n', '\r', '\t\v\f ', '\n\n\n', '()', '(', ')', '(2)', '(2 )', '( 2 a)', '(2  a )', '(2 a) (2 b)',
      '\u00a0', '\ufeff', '\ufeff(2 a)', '(2 a)\ufeff', '\0', '(\0 a)', '(2 a\0)', '(2 \u00a0)', '(2 a\u00a0b)', '(2 (2 a))',
      '(2 (2 a) (2 b) (2 c))', '(2 a b)', '((2 a) (2 b))', '(2 (2 a)(2 b))', '(2(2 a) (2 b))', '(-0 a)', '(0 a)\r', '(0 a)\r\r',
    ]);
  }
  // Short strings over the grammar's own alphabet reach corners that mutating long lines rarely does.
  let s = '';
  const len = rng.int(14);
  for (let i = 0; i < len; i++) s += pick(rng, TINY_ALPHABET);
  return s;
}

// ---------------------------------------------------------------------------
// Byte-level tree mutations

const BAD_UTF8 = [
  [0x80], [0xbf], [0xc0, 0xaf], [0xc1, 0xbf], [0xe0, 0x80, 0xaf], [0xe0, 0x9f, 0xbf], [0xed, 0xa0, 0x80], [0xed, 0xbf, 0xbf],
  [0xf0, 0x8f, 0xbf, 0xbf], [0xf4, 0x90, 0x80, 0x80], [0xf5, 0x80, 0x80, 0x80], [0xf8], [0xfe], [0xff], [0xc3], [0xe2, 0x82],
  [0xf0, 0x9f, 0x98], [0xc3, 0x28], [0xe2, 0x28, 0xa1], [0xe2, 0x82, 0x28],
];

function utf8Case(rng, line) {
  let bytes = Buffer.from(line, 'utf8');
  const r = rng.int(5);
  if (r === 0 && /^[\u0000-\u00ff]*$/.test(line) && /[\u0080-\u00ff]/.test(line)) {
    // A Latin-1 file, the mistake this check exists for.
    return Buffer.from(line, 'latin1');
  }
  if (r === 1) {
    // Cut the file inside a multi-byte character.
    const multi = Buffer.from(`${line} (2 ${pick(rng, ['é', '😀', '€'])}`, 'utf8');
    return multi.subarray(0, multi.length - 1);
  }
  if (r === 2) {
    // Damage a byte of a real multi-byte character.
    const highs = [];
    for (let i = 0; i < bytes.length; i++) if (bytes[i] >= 0x80) highs.push(i);
    if (highs.length > 0) {
      bytes = Buffer.from(bytes);
      bytes[pick(rng, highs)] = pick(rng, [0x20, 0x28, 0x41, 0xff, 0xc0, 0x80]);
      return bytes;
    }
  }
  const k = 1 + rng.int(3);
  for (let i = 0; i < k; i++) {
    const at = rng.int(bytes.length + 1);
    bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(pick(rng, BAD_UTF8)), bytes.subarray(at)]);
  }
  return bytes;
}

function randomBytes(rng) {
  const n = logInt(rng, 1, 4096) - (chance(rng, 0.05) ? 1 : 0);
  const out = Buffer.alloc(n);
  // Half the time bias toward the grammar's bytes so that random input sometimes gets past the first token.
  const biased = chance(rng, 0.5);
  const favourites = Buffer.from('(()) 0123456789aZ\n\r\t\0', 'latin1');
  for (let i = 0; i < n; i++) {
    out[i] = biased && chance(rng, 0.7) ? favourites[rng.int(favourites.length)] : rng.int(256);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Tree cases

/** Category weights; deep and long-token cases are rarer because each costs milliseconds to seconds. */
const TREE_CATEGORIES = [
  ['valid', 4],
  ['paren-drop', 8],
  ['paren-dup', 8],
  ['paren-swap', 8],
  ['label', 8],
  ['non-binary', 7],
  ['unary', 6],
  ['empty', 5],
  ['deep', 0.4],
  ['invalid-utf8', 8],
  ['nul', 5],
  ['long-token', 0.8],
  ['random-bytes', 6],
  ['havoc', 12],
  ['multiline', 6],
];

const LINE_MUTATORS = {
  'paren-drop': 'dropParen',
  'paren-dup': 'duplicateParen',
  'paren-swap': 'swapParen',
  label: 'label',
  'non-binary': 'nonBinary',
  unary: 'unary',
  nul: 'nul',
  'long-token': 'longToken',
  havoc: 'havoc',
};

/**
 * Tree case `index`: `{ category, classes, firstLine, text }` (a JS string,
 * parsed with parseTrees and, when it is well-formed UTF-16, also written as
 * UTF-8 and read back with readTrees) or `{ …, bytes }` (only readTrees).
 */
function treeCase(api, corpus, seed, index, options = {}) {
  const rng = caseRandom(api, seed, 'tree', index);
  // Drawn even when pinned, so that the rest of the case is the same either way.
  const drawn = weightedPick(rng, TREE_CATEGORIES);
  const category = options.category ?? drawn;
  // Mostly SST's five classes; sometimes fewer or more, which turns real labels out of range or back in.
  const classes = chance(rng, 0.9) ? 5 : pick(rng, [1, 2, 3, 4, 10, 1000]);
  const ctx = { classes, corpus: corpus.lines, strings: true, maxDepth: options.maxDepth ?? 1_000_000 };
  const line = pick(rng, corpus.lines);
  // Sometimes a chunk of a larger file: errors must add options.firstLine - 1 to their line numbers.
  const firstLine = chance(rng, 0.9) ? 1 : 1 + rng.int(1_000_000);
  const base = { index, category, classes, firstLine };
  switch (category) {
    case 'valid':
      return { ...base, text: chance(rng, 0.5) ? line : respace(rng, line) };
    case 'empty':
      return { ...base, text: emptyishCase(rng) };
    case 'deep': {
      const d = deepCase(rng, ctx);
      return { ...base, text: d.text, note: `${d.shape}, depth ${d.depth}` };
    }
    case 'invalid-utf8':
      return { ...base, bytes: utf8Case(rng, line) };
    case 'random-bytes':
      return { ...base, bytes: randomBytes(rng) };
    case 'multiline': {
      const n = 2 + rng.int(6);
      const lines = [];
      for (let i = 0; i < n; i++) {
        const r = rng.next();
        lines.push(r < 0.15 ? pick(rng, ['', ' ', '\t', '\r']) : pick(rng, corpus.lines));
      }
      // Usually one line is broken, so that the error must name that line and not another.
      if (chance(rng, 0.75)) {
        const at = rng.int(n);
        const m = LINE_MUTATORS[pick(rng, ['paren-drop', 'paren-dup', 'label', 'non-binary', 'unary', 'nul', 'havoc'])];
        lines[at] = treeMutators[m](rng, lines[at] || line, ctx);
      }
      const eol = pick(rng, ['\n', '\n', '\r\n']);
      let text = lines.join(eol) + (chance(rng, 0.5) ? eol : '');
      if (chance(rng, 0.15)) text = '\ufeff' + text;
      return { ...base, text };
    }
    default: {
      const m = LINE_MUTATORS[category];
      if (m === undefined) throw new RangeError(`unknown tree category ${category}`);
      return { ...base, text: treeMutators[m](rng, line, ctx) };
    }
  }
}

// ---------------------------------------------------------------------------
// Model files

const VOCAB_POOL = [
  '*UNK*', 'the', 'a', 'good', 'bad', 'é', 'naïve', '😀', '8\u00a01\\/2', '-LRB-', '-RRB-', '``', "''", '"', '\\', ' ', '',
  '__proto__', 'constructor', 'toString', 'hasOwnProperty', '\u2028', 'a\0b', '\ud800', 'x'.repeat(300),
];

/** Valid model files to mutate: several sizes of d, C and vocabulary, both leaf activations. */
function makeModelPool(api, seed, count = 12) {
  const rng = caseRandom(api, seed, 'pool', 0);
  const pool = [];
  for (let k = 0; k < count; k++) {
    const dim = k === 0 ? 25 : pick(rng, [1, 2, 3, 4, 5, 8]);
    const classes = k === 0 ? 5 : pick(rng, [2, 3, 5]);
    const words = new Set();
    const size = 1 + rng.int(30);
    while (words.size < size) {
      words.add(chance(rng, 0.5) ? pick(rng, VOCAB_POOL) : `w${rng.int(1000)}${pick(rng, ['', 'é', '😀'])}`);
    }
    const vocab = new api.vocab.Vocabulary([...words]);
    const model = api.model.Model.create(vocab, { dim, classes, leaf: pick(rng, ['identity', 'tanh']), seed: k + 1 });
    // JSON.parse, not a literal: a literal "__proto__" key would set the prototype instead of adding a key.
    const extra = chance(rng, 0.5) ? JSON.parse('{"note":"fuzz","__proto__":"kept","toString":"x"}') : {};
    const bytes = api.modelFile.encodeModel(model, extra);
    pool.push({ model, bytes, ...splitFile(bytes) });
  }
  return pool;
}

function splitFile(bytes) {
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const headerText = bytes.subarray(8, 8 + headerLength).toString('utf8');
  return { headerLength, headerText, header: JSON.parse(headerText), data: bytes.subarray(8 + headerLength) };
}

/** A file from a header (object or raw text/bytes) and a data section, with a correct length field. */
function buildFile(header, data, { pad = true } = {}) {
  let json = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  if (pad && json.length % 8 !== 0) json = Buffer.concat([json, Buffer.alloc(8 - (json.length % 8), 0x20)]);
  const out = Buffer.alloc(8 + json.length + data.length);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(out, 8);
  Buffer.from(data.buffer, data.byteOffset, data.byteLength).copy(out, 8 + json.length);
  return out;
}

const TENSORS = ['L', 'W', 'b', 'V', 'Ws', 'bs'];
const clone = (x) => JSON.parse(JSON.stringify(x));

/** The tensors of a base file as separate buffers, to lay out again differently. */
function tensorBytes(base) {
  const out = {};
  for (const name of TENSORS) {
    const [b, e] = base.header[name].data_offsets;
    out[name] = base.data.subarray(b, e);
  }
  return out;
}

/** Lays tensors out in `order`, as `dtypes` (F32 or F64), with `gap` bytes between them. */
function relayout(base, { order = TENSORS, dtypes = {}, gap = 0, metadata = base.header.__metadata__, metadataLast = false, transform } = {}) {
  const raw = tensorBytes(base);
  const header = {};
  if (!metadataLast && metadata !== undefined) header.__metadata__ = metadata;
  const parts = [];
  let at = 0;
  for (const name of order) {
    let bytes = raw[name];
    const dtype = dtypes[name] ?? 'F32';
    if (dtype === 'F64' || transform) {
      const f32 = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
      const values = transform ? transform(name, Float64Array.from(f32)) : Float64Array.from(f32);
      const typed = dtype === 'F64' ? Float64Array.from(values) : Float32Array.from(values);
      bytes = Buffer.from(typed.buffer);
    }
    header[name] = { dtype, shape: base.header[name].shape, data_offsets: [at, at + bytes.length] };
    parts.push(bytes);
    at += bytes.length;
    if (gap > 0) {
      parts.push(Buffer.alloc(gap, 0xab));
      at += gap;
    }
  }
  if (metadataLast && metadata !== undefined) header.__metadata__ = metadata;
  return { header, data: Buffer.concat(parts) };
}

const MODEL_CATEGORIES = [
  ['valid', 6],
  ['truncated', 8],
  ['header-length', 8],
  ['header-json', 10],
  ['dtype', 6],
  ['shape', 8],
  ['offsets', 8],
  ['vocab', 8],
  ['non-finite', 8],
  ['metadata', 8],
  ['byte-flip', 12],
  ['random-bytes', 4],
  ['huge-claims', 6],
];

/** Whether vocabulary text is what the contract asks for: a JSON array of `rows` distinct strings. */
function isVocabulary(text, rows) {
  if (text === undefined) return false;
  let words;
  try {
    words = JSON.parse(text);
  } catch {
    return false;
  }
  return Array.isArray(words) && words.length === rows && words.every((w) => typeof w === 'string') && new Set(words).size === rows;
}

const F32_BAD = [0x7fc00000, 0xffc00000, 0x7f800001, 0x7fbfffff, 0x7f800000, 0xff800000, 0xffffffff];

function withHeader(base, edit, pad = true) {
  const header = clone(base.header);
  edit(header);
  return buildFile(header, base.data, { pad });
}

/**
 * Model case `index`: `{ category, bytes, expect }` where expect is 'load' (a
 * file that follows the contract), 'reject' (one that breaks it) or 'either'
 * (blind damage that may or may not leave a valid file).
 */
function modelCase(api, pool, seed, index, options = {}) {
  const rng = caseRandom(api, seed, 'model', index);
  // Drawn even when pinned, so that the rest of the case is the same either way.
  const drawn = weightedPick(rng, MODEL_CATEGORIES);
  const category = options.category ?? drawn;
  const base = pick(rng, pool);
  const viaFile = chance(rng, 0.1);
  const result = (bytes, expect, note, extra = {}) => ({ index, category, bytes, expect, note, viaFile, base, ...extra });
  const name = pick(rng, TENSORS);
  switch (category) {
    case 'valid': {
      const meta = clone(base.header.__metadata__);
      switch (rng.int(9)) {
        case 0:
          return result(base.bytes, 'load', 'as written', { sameValues: true });
        case 1: {
          const r = relayout(base, { order: [...TENSORS].reverse() });
          return result(buildFile(r.header, r.data), 'load', 'reversed tensor order', { sameValues: true });
        }
        case 2: {
          const r = relayout(base, { order: rng.shuffle([...TENSORS]), metadataLast: chance(rng, 0.5) });
          return result(buildFile(r.header, r.data, { pad: false }), 'load', 'shuffled order, no padding', { sameValues: true });
        }
        case 3: {
          const dtypes = {};
          for (const t of TENSORS) if (chance(rng, 0.6)) dtypes[t] = 'F64';
          const r = relayout(base, { dtypes });
          return result(buildFile(r.header, r.data), 'load', `F64 for ${Object.keys(dtypes).join(',') || 'none'}`, { sameValues: true });
        }
        case 4: {
          for (const k of ['dim', 'classes', 'format', 'note', 'toString']) if (chance(rng, 0.7)) delete meta[k];
          if (meta.leaf === 'identity' && chance(rng, 0.5)) delete meta.leaf;
          return result(withHeader(base, (h) => (h.__metadata__ = meta)), 'load', 'hyperparameters left out', { sameValues: true });
        }
        case 5: {
          meta.format = pick(rng, ['pt', 'np', '', 'rntn/1', 'rntn']);
          meta.dim = '0'.repeat(rng.int(3)) + meta.dim;
          Object.defineProperty(meta, '__proto__', { value: 'still a key', enumerable: true, configurable: true, writable: true });
          return result(withHeader(base, (h) => (h.__metadata__ = meta)), 'load', 'other format, padded dim, __proto__ key', { sameValues: true });
        }
        case 6: {
          // Same words, escaped differently in JSON: the file must mean the same.
          const text = base.headerText.trimEnd().replace(/"(L|W|b|V|Ws|bs)"/g, (m, n) => `"\\u${n.charCodeAt(0).toString(16).padStart(4, '0')}${n.slice(1)}"`);
          return result(buildFile(` \n${text}\t`, base.data, { pad: chance(rng, 0.5) }), 'load', 'escaped names, whitespace', { sameValues: true });
        }
        case 7: {
          const words = JSON.parse(meta.vocab).map((w, i) => `renamed${i}`);
          meta.vocab = JSON.stringify(words);
          return result(withHeader(base, (h) => (h.__metadata__ = meta)), 'load', 'other words, same count');
        }
        default: {
          // Lenient, not required: the reference reader refuses gaps and trailing bytes.
          const r = relayout(base, { gap: 1 + rng.int(16) });
          return result(buildFile(r.header, r.data), 'either', 'gaps between tensors');
        }
      }
    }
    case 'truncated':
      return result(base.bytes.subarray(0, rng.int(base.bytes.length)), 'reject', 'cut short');
    case 'header-length': {
      const bytes = Buffer.from(base.bytes);
      const len = base.headerLength;
      const values = [
        0n, 1n, 2n, 7n, BigInt(len - 1), BigInt(len + 1), BigInt(bytes.length - 8), BigInt(bytes.length - 7), BigInt(bytes.length),
        100_000_000n, 100_000_001n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n,
        BigInt(rng.nextUint32()), (BigInt(rng.nextUint32()) << 32n) | BigInt(rng.nextUint32()),
      ];
      const v = pick(rng, values);
      bytes.writeBigUInt64LE(v, 0);
      return result(bytes, v > BigInt(bytes.length - 8) ? 'reject' : 'either', `header length ${v}`);
    }
    case 'header-json': {
      const text = base.headerText;
      switch (rng.int(6)) {
        case 0: {
          let t = text;
          for (let i = 1 + rng.int(4); i > 0; i--) {
            const at = rng.int(t.length + 1);
            t = rng.int(2) === 0 ? splice(t, at, 1 + rng.int(4), '') : splice(t, at, 0, pick(rng, ['{', '}', '[', ']', ',', ':', '"', '\\', 'null', '1e999', '-', '\0', '\ufeff', '\ud800']));
          }
          return result(buildFile(t, base.data), 'either', 'JSON text edited');
        }
        case 1:
          return result(buildFile(pick(rng, ['[]', 'null', '1', '"x"', 'true', '', ' ', '{}', '[{}]']), base.data), 'reject', 'not an object');
        case 2: {
          // Cutting only padding leaves the same header (buildFile pads it back).
          const cut = text.slice(0, rng.int(text.length));
          return result(buildFile(cut, base.data), cut.trimEnd() === text.trimEnd() ? 'load' : 'reject', 'JSON cut short');
        }
        case 3: {
          const n = logInt(rng, 10, 1_000_000);
          return result(buildFile(`{"L":${'['.repeat(n)}${']'.repeat(n)}}`, base.data), 'reject', `nesting ${n}`);
        }
        case 4: {
          const prefix = pick(rng, [[0xef, 0xbb, 0xbf], [0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x00]]);
          return result(buildFile(Buffer.concat([Buffer.from(prefix), Buffer.from(text)]), base.data), 'reject', 'bad bytes before the JSON');
        }
        default: {
          // A duplicate key: JSON.parse keeps the last, which here is a broken entry.
          const t = text.trimEnd().replace(/}$/, `,"${name}":{"dtype":"F32","shape":[1],"data_offsets":[0,3]}}`);
          return result(buildFile(t, base.data), 'reject', `duplicate ${name}`);
        }
      }
    }
    case 'dtype': {
      const dtype = pick(rng, ['F64', 'F16', 'BF16', 'I32', 'U8', 'BOOL', 'f32', 'float32', '', 'F32 ', 123, null, ['F32'], {}, 'C64', 'F8_E4M3']);
      return result(withHeader(base, (h) => (h[name].dtype = dtype)), 'reject', `${name} dtype ${JSON.stringify(dtype)}`);
    }
    case 'shape': {
      const shape = base.header[name].shape;
      const choices = [
        () => [...shape].reverse(),
        () => [...shape, 1],
        () => shape.slice(1),
        () => [],
        () => [shape.reduce((a, b) => a * b, 1)],
        () => shape.map((n, i) => (i === 0 ? n + 1 : n)),
        () => shape.map((n, i) => (i === shape.length - 1 ? -n : n)),
        () => shape.map((n) => n + 0.5),
        () => shape.map(String),
        () => [null],
        () => [[...shape]],
        () => ({ 0: shape[0] }),
        () => 'shape',
        () => [2 ** 53, 2 ** 53],
        () => [1e300],
        () => Array(logInt(rng, 65, 200_000)).fill(2 ** 53 - 1),
        () => [...Array(logInt(rng, 2, 100_000)).fill(1), ...shape],
        () => [0, 2 ** 53 - 1],
      ];
      const next = pick(rng, choices)();
      // Some choices leave a shape as it was (reversing [d] or [5, 5]); any real change breaks the contract.
      const expect = JSON.stringify(next) === JSON.stringify(shape) ? 'load' : 'reject';
      return result(withHeader(base, (h) => (h[name].shape = next)), expect, `${name} shape ${JSON.stringify(next).slice(0, 60)}`);
    }
    case 'offsets': {
      const [b, e] = base.header[name].data_offsets;
      const other = pick(rng, TENSORS.filter((t) => t !== name));
      const [ob] = base.header[other].data_offsets;
      const size = e - b;
      const dataLength = base.data.length;
      const choices = [
        ['reject', () => [e, b]],
        ['reject', () => [b, dataLength + 1 + rng.int(100)]],
        ['reject', () => [dataLength + 4, dataLength + 4 + size]],
        ['reject', () => [b, e, e]],
        ['reject', () => [b]],
        ['reject', () => [b - 0.5, e - 0.5]],
        ['reject', () => [-size, 0]],
        ['reject', () => [String(b), String(e)]],
        ['reject', () => [b, 2 ** 53]],
        ['reject', () => [2 ** 53 - 1 - size, 2 ** 53 - 1]],
        ['reject', () => null],
        ['reject', () => ({ 0: b, 1: e })],
        // Over another tensor (every model tensor is non-empty), or past the data when it does not fit.
        ['reject', () => [ob, ob + size]],
        ['either', () => [b + 4 * (rng.int(5) - 2), e + 4 * (rng.int(5) - 2)]],
      ];
      const [expect, make] = pick(rng, choices);
      const next = make();
      return result(withHeader(base, (h) => (h[name].data_offsets = next)), expect, `${name} data_offsets ${JSON.stringify(next)}`);
    }
    case 'vocab': {
      const words = JSON.parse(base.header.__metadata__.vocab);
      const variants = [
        () => JSON.stringify(words.slice(0, -1)),
        () => JSON.stringify([...words, 'extra word']),
        () => JSON.stringify([...words.slice(1), words[0]]),
        () => JSON.stringify(words.map((w, i) => (i === words.length - 1 ? 7 : w))),
        () => JSON.stringify(words.map((w, i) => (i === 0 ? null : w))),
        () => JSON.stringify({ 0: words[0] }),
        () => JSON.stringify(words).slice(0, -1),
        () => JSON.stringify(words.join(' ')),
        () => '',
        () => '[]',
        () => undefined,
        () => JSON.stringify(Array(words.length + 20_000).fill('w')),
        () => `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
      ];
      // A duplicate only exists with two or more words.
      if (words.length > 1) variants.push(() => JSON.stringify(words.map((w, i) => (i === 1 ? words[0] : w))));
      const text = pick(rng, variants)();
      const expect = isVocabulary(text, words.length) ? 'load' : 'reject';
      return result(withHeader(base, (h) => {
        if (text === undefined) delete h.__metadata__.vocab;
        else h.__metadata__.vocab = text;
      }), expect, `vocab ${text === undefined ? 'missing' : text.slice(0, 40)}`);
    }
    case 'non-finite': {
      if (chance(rng, 0.7)) {
        const bytes = Buffer.from(base.bytes);
        const [b, e] = base.header[name].data_offsets;
        const at = 8 + base.headerLength + b + 4 * rng.int((e - b) / 4);
        bytes.writeUInt32LE(pick(rng, F32_BAD), at);
        return result(bytes, 'reject', `${name} non-finite F32`);
      }
      const value = pick(rng, [NaN, Infinity, -Infinity, 1e39, -1e300, Number.MAX_VALUE, 3.5e38]);
      const r = relayout(base, { dtypes: { [name]: 'F64' }, transform: (t, v) => (t === name ? v.map((x, i) => (i === 0 ? value : x)) : v) });
      return result(buildFile(r.header, r.data), 'reject', `${name} F64 ${value}`);
    }
    case 'metadata': {
      const variants = [
        ['reject', 'dim + 1', (m) => (m.dim = String(Number(m.dim) + 1))],
        ['reject', 'classes + 1', (m) => (m.classes = String(Number(m.classes) + 1))],
        ['reject', 'dim with a space', (m) => (m.dim = ` ${m.dim}`)],
        ['reject', 'dim 2.5e1', (m) => (m.dim = '2.5e1')],
        ['reject', 'classes empty', (m) => (m.classes = '')],
        ['reject', 'unknown leaf', (m) => (m.leaf = pick(rng, ['relu', 'Tanh', '', 'identity ']))],
        ['reject', 'other rntn format', (m) => (m.format = pick(rng, ['rntn/2', 'rntn/0', 'rntn/']))],
        ['reject', 'dim as a number', (m) => (m.dim = 25)],
        ['reject', 'null value', (m) => (m.note = null)],
        ['reject', 'vocab as an array', (m) => (m.vocab = JSON.parse(m.vocab))],
        ['load', 'a 100 kB value', (m) => (m.extra = 'x'.repeat(100_000))],
      ];
      const [expect, note, edit] = pick(rng, variants);
      if (chance(rng, 0.15)) {
        const value = pick(rng, [[], 'meta', 1, true]);
        return result(withHeader(base, (h) => (h.__metadata__ = value)), 'reject', `__metadata__ ${JSON.stringify(value)}`);
      }
      if (chance(rng, 0.1)) return result(withHeader(base, (h) => (h.__metadata__ = null)), 'reject', '__metadata__ null: no vocab');
      return result(withHeader(base, (h) => edit(h.__metadata__)), expect, note);
    }
    case 'byte-flip': {
      const bytes = Buffer.from(base.bytes);
      const flips = 1 + rng.int(chance(rng, 0.8) ? 4 : 64);
      // Half the flips go to the length field and header, where a single bit changes the most.
      const headerEnd = 8 + base.headerLength;
      for (let i = 0; i < flips; i++) {
        const at = chance(rng, 0.5) ? rng.int(headerEnd) : rng.int(bytes.length);
        if (chance(rng, 0.7)) bytes[at] ^= 1 << rng.int(8);
        else bytes[at] = rng.int(256);
      }
      return result(bytes, 'either', `${flips} flips`);
    }
    case 'random-bytes': {
      const n = logInt(rng, 1, 4096) - 1;
      const bytes = Buffer.alloc(n);
      for (let i = 0; i < n; i++) bytes[i] = rng.int(256);
      // A plausible length field gets past the first check into the JSON parser.
      if (n >= 8 && chance(rng, 0.5)) bytes.writeBigUInt64LE(BigInt(rng.int(n - 7)), 0);
      return result(bytes, 'either', `${n} random bytes`);
    }
    case 'huge-claims': {
      // Files that claim far more than they hold: none of it may be allocated.
      const claims = [
        () => { const b = Buffer.from(base.bytes); b.writeBigUInt64LE(2n ** 64n - 1n, 0); return [b, 'length 2^64-1']; },
        () => { const b = Buffer.from(base.bytes); b.writeBigUInt64LE(99_999_999n, 0); return [b, 'length just under the cap']; },
        () => [withHeader(base, (h) => { h.L.shape = [1e9, h.L.shape[1]]; h.L.data_offsets = [0, 4e9 * h.L.shape[1]]; }), 'L of 1e9 rows'],
        () => [withHeader(base, (h) => { h.V.shape = [2 ** 20, 2 ** 20, 2 ** 13]; }), 'V of 2^53 values'],
        () => [withHeader(base, (h) => { h.b.shape = [2 ** 40]; h.b.data_offsets = [0, 2 ** 42]; }), 'b of 2^40'],
        () => [withHeader(base, (h) => { h.bs.data_offsets = [0, 2 ** 53 - 1]; }), 'offset 2^53-1'],
        () => [withHeader(base, (h) => { for (let i = 0; i < 5000; i++) h[`t${i}`] = { dtype: 'F32', shape: [0], data_offsets: [0, 0] }; }), '5000 empty tensors'],
        () => [withHeader(base, (h) => { h.W.shape = Array(30_000).fill(2 ** 53 - 1); }), '30k dims of 2^53-1 (4.5 s of BigInt products before the fix)'],
        () => [withHeader(base, (h) => { h.__metadata__.vocab = JSON.stringify(Array(20_000).fill(0).map((_, i) => `w${i}`)); }), 'vocab of 20k words for a small L'],
        () => [buildFile('{"__metadata__":{"vocab":"[]"},"L":{"dtype":"F32","shape":[4294967296,1],"data_offsets":[0,17179869184]}}', Buffer.alloc(64)), 'L of 2^32 rows in 64 bytes'],
      ];
      const [bytes, note] = pick(rng, claims)();
      return result(bytes, 'reject', note);
    }
    default:
      throw new RangeError(`unknown model category ${category}`);
  }
}

module.exports = {
  loadTreeCorpus,
  treeCase,
  TREE_CATEGORIES,
  makeModelPool,
  modelCase,
  MODEL_CATEGORIES,
};
