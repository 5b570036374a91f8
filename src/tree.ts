import { readFileNamed } from './files';

/**
 * Sentiment trees in the PTB form of the Stanford Sentiment Treebank:
 * `(3 (2 The) (4 Rock))`. DESIGN.md ("Contracts other programs rely on") fixes
 * the rules: binary nodes and labelled words only, tokens taken verbatim and
 * separated by ASCII whitespace only, errors that name file, line and column.
 *
 * Everything here is iterative on purpose: trees come from user files, and a
 * pathological line nested a million deep must give an error, not a stack
 * overflow. Parsing is linear in the input so that a fuzzer cannot hang it.
 */

export interface LeafNode {
  label: number;
  word: string;
}

export interface InternalNode {
  label: number;
  left: TreeNode;
  right: TreeNode;
}

export type TreeNode = LeafNode | InternalNode;

export function isLeaf(node: TreeNode): node is LeafNode {
  return typeof (node as LeafNode).word === 'string';
}

/** Bad tree text. The message always reads `source:line:column: expected …, found …`. */
export class TreeParseError extends Error {
  override readonly name = 'TreeParseError';

  constructor(
    readonly source: string,
    readonly line: number,
    /** 1-based, in Unicode code points from the start of the line. */
    readonly column: number,
    readonly expected: string,
    readonly found: string,
  ) {
    super(`${source}:${line}:${column}: expected ${expected}, found ${found}`);
  }
}

export interface ParseOptions {
  /** Name used in error messages: a file name, or `<input>` (the default). */
  source?: string;
  /** Number of classes; labels must be integers 0..classes-1. Default 5. */
  classes?: number;
  /** Line number of the first line of the text, for errors in a chunk of a file. Default 1. */
  firstLine?: number;
}

// ---------------------------------------------------------------------------
// Parsing

const SPACE = 0x20;
const TAB = 0x09;
const LF = 0x0a;
const VT = 0x0b;
const FF = 0x0c;
const CR = 0x0d;
const OPEN = 0x28;
const CLOSE = 0x29;
const NUL = 0x00;

// Only ASCII whitespace separates tokens: SST has a word with U+00A0 inside.
function isSpace(c: number): boolean {
  return c === SPACE || c === TAB || c === LF || c === CR || c === FF || c === VT;
}

function isWordChar(c: number): boolean {
  return c !== OPEN && c !== CLOSE && !isSpace(c);
}

interface Context {
  readonly text: string;
  readonly source: string;
  readonly classes: number;
  /** Where the region being parsed starts in `text`, and its line number. */
  readonly regionStart: number;
  readonly firstLine: number;
  /** What running out of text is called in messages. */
  readonly endName: string;
  readonly labelExpected: string;
}

function resolveOptions(options: ParseOptions | undefined): { source: string; classes: number; firstLine: number } {
  const source = options?.source ?? '<input>';
  const classes = options?.classes ?? 5;
  const firstLine = options?.firstLine ?? 1;
  // Bad options are a programming error, not bad input, hence not TreeParseError.
  if (typeof source !== 'string') throw new TypeError('options.source must be a string');
  if (!Number.isSafeInteger(classes) || classes < 1) {
    throw new RangeError(`options.classes must be a positive integer, got ${String(classes)}`);
  }
  if (!Number.isSafeInteger(firstLine) || firstLine < 1) {
    throw new RangeError(`options.firstLine must be a positive integer, got ${String(firstLine)}`);
  }
  return { source, classes, firstLine };
}

function makeContext(
  text: string,
  regionStart: number,
  opts: { source: string; classes: number; firstLine: number },
  endName: string,
): Context {
  return {
    text,
    source: opts.source,
    classes: opts.classes,
    regionStart,
    firstLine: opts.firstLine,
    endName,
    labelExpected: `a label (an integer from 0 to ${opts.classes - 1})`,
  };
}

/**
 * Line and code-point column of `pos`. Only called when building an error, so
 * the scan from the region start costs nothing on the happy path and keeps
 * error reporting linear.
 */
function locate(ctx: Context, pos: number): { line: number; column: number } {
  const { text } = ctx;
  let line = ctx.firstLine;
  let column = 1;
  for (let i = ctx.regionStart; i < pos; i++) {
    const c = text.charCodeAt(i);
    if (c === LF) {
      line++;
      column = 1;
    } else if (c >= 0xdc00 && c <= 0xdfff && i > ctx.regionStart) {
      // The low half of a surrogate pair is the same code point as the high half.
      const prev = text.charCodeAt(i - 1);
      if (!(prev >= 0xd800 && prev <= 0xdbff)) column++;
    } else {
      column++;
    }
  }
  return { line, column };
}

const MAX_SHOWN = 40;

/** How the text at `pos` is named in "found …". */
function describe(ctx: Context, pos: number, end: number): string {
  if (pos >= end) return ctx.endName;
  const { text } = ctx;
  const c = text.charCodeAt(pos);
  if (c === NUL) return 'a NUL character (U+0000)';
  if (!isWordChar(c)) return JSON.stringify(text[pos]);
  let stop = pos;
  while (stop < end && stop - pos <= MAX_SHOWN && isWordChar(text.charCodeAt(stop))) stop++;
  let cut = Math.min(stop, pos + MAX_SHOWN);
  // Cutting between the halves of a surrogate pair would show half a character as an escape (\ud83d).
  const last = text.charCodeAt(cut - 1);
  if (cut < stop && cut - 1 > pos && last >= 0xd800 && last <= 0xdbff) cut--;
  const token = text.slice(pos, cut);
  return stop - pos > MAX_SHOWN ? `${JSON.stringify(token)}…` : JSON.stringify(token);
}

function fail(ctx: Context, pos: number, end: number, expected: string): never {
  const { line, column } = locate(ctx, pos);
  throw new TreeParseError(ctx.source, line, column, expected, describe(ctx, pos, end));
}

/** "the node opened at column 5", with the line too when it differs from the error's. */
function openedAt(ctx: Context, openPos: number, errorPos: number): string {
  const open = locate(ctx, openPos);
  const here = locate(ctx, errorPos);
  return open.line === here.line
    ? `the node opened at column ${open.column}`
    : `the node opened at line ${open.line}, column ${open.column}`;
}

function skipSpace(text: string, pos: number, end: number): number {
  while (pos < end && isSpace(text.charCodeAt(pos))) pos++;
  return pos;
}

/** End of the word starting at `pos`; a NUL inside it is an error (binary data, not text). */
function scanToken(ctx: Context, pos: number, end: number): number {
  const { text } = ctx;
  while (pos < end) {
    const c = text.charCodeAt(pos);
    if (!isWordChar(c)) break;
    if (c === NUL) fail(ctx, pos, end, 'a word or label character');
    pos++;
  }
  return pos;
}

const SHAPE = 'a node holds one word or exactly two subtrees';

/**
 * Parses one tree starting at the first non-space at or after `pos` and
 * returns it with the position just past its closing parenthesis.
 *
 * The explicit stack holds the internal nodes whose children are still being
 * read; `lefts[k]` is null until the left child of frame k is complete.
 */
function parseOne(ctx: Context, pos: number, end: number): { tree: TreeNode; pos: number } {
  const { text, classes } = ctx;
  const labels: number[] = [];
  const opens: number[] = [];
  const lefts: (TreeNode | null)[] = [];

  pos = skipSpace(text, pos, end);
  if (pos >= end || text.charCodeAt(pos) !== OPEN) fail(ctx, pos, end, '"(" to start a tree');

  for (;;) {
    // Here text[pos] is '(' opening a node.
    const openPos = pos;
    pos++;
    const labelStart = pos;
    const labelEnd = scanToken(ctx, pos, end);
    if (labelEnd === labelStart) fail(ctx, pos, end, ctx.labelExpected);
    let label = 0;
    for (let i = labelStart; i < labelEnd; i++) {
      const d = text.charCodeAt(i) - 0x30;
      if (d < 0 || d > 9) fail(ctx, labelStart, end, ctx.labelExpected);
      // Saturate so that a thousand-digit label stays out of range instead of becoming imprecise.
      if (label < classes) label = label * 10 + d;
    }
    if (label >= classes) fail(ctx, labelStart, end, ctx.labelExpected);
    pos = labelEnd;
    if (pos >= end || !isSpace(text.charCodeAt(pos))) fail(ctx, pos, end, 'whitespace after the label');
    pos = skipSpace(text, pos, end);
    if (pos >= end) fail(ctx, pos, end, 'a word or "(" after the label');
    const c = text.charCodeAt(pos);
    if (c === OPEN) {
      labels.push(label);
      opens.push(openPos);
      lefts.push(null);
      continue;
    }
    if (c === CLOSE) fail(ctx, pos, end, 'a word or "(" after the label');

    const wordEnd = scanToken(ctx, pos, end);
    let done: TreeNode = { label, word: text.slice(pos, wordEnd) };
    pos = skipSpace(text, wordEnd, end);
    if (pos >= end || text.charCodeAt(pos) !== CLOSE) {
      fail(ctx, pos, end, `")" to close ${openedAt(ctx, openPos, pos)} (${SHAPE})`);
    }
    pos++;

    // Climb: attach the finished node to its parent until a parent needs a right child.
    for (;;) {
      const top = lefts.length - 1;
      if (top < 0) return { tree: done, pos };
      const left = lefts[top];
      pos = skipSpace(text, pos, end);
      if (left === null) {
        lefts[top] = done;
        if (pos >= end || text.charCodeAt(pos) !== OPEN) {
          fail(ctx, pos, end, `"(" to start the second subtree of ${openedAt(ctx, opens[top]!, pos)} (${SHAPE})`);
        }
        break;
      }
      if (pos >= end || text.charCodeAt(pos) !== CLOSE) {
        fail(ctx, pos, end, `")" to close ${openedAt(ctx, opens[top]!, pos)} (${SHAPE})`);
      }
      pos++;
      done = { label: labels[top]!, left, right: done };
      labels.pop();
      opens.pop();
      lefts.pop();
    }
  }
}

/** Parses exactly one tree; ASCII whitespace (newlines included) may surround it. */
export function parseTree(line: string, options?: ParseOptions): TreeNode {
  if (typeof line !== 'string') throw new TypeError('parseTree expects a string');
  const ctx = makeContext(line, 0, resolveOptions(options), 'end of input');
  const end = line.length;
  const { tree, pos } = parseOne(ctx, 0, end);
  const after = skipSpace(line, pos, end);
  if (after < end) fail(ctx, after, end, 'end of input after the tree');
  return tree;
}

/** One tree per line; lines holding only ASCII whitespace are skipped. */
export function parseTrees(text: string, options?: ParseOptions): TreeNode[] {
  if (typeof text !== 'string') throw new TypeError('parseTrees expects a string');
  const opts = resolveOptions(options);
  const trees: TreeNode[] = [];
  let lineNo = opts.firstLine;
  let start = 0;
  const n = text.length;
  while (start <= n) {
    let nl = text.indexOf('\n', start);
    if (nl < 0) nl = n;
    // Leave the CR of a CRLF out so that "found end of line" points just past the last visible character.
    const end = nl > start && text.charCodeAt(nl - 1) === CR ? nl - 1 : nl;
    const first = skipSpace(text, start, end);
    if (first < end) {
      const ctx = makeContext(text, start, { ...opts, firstLine: lineNo }, 'end of line');
      const { tree, pos } = parseOne(ctx, first, end);
      const after = skipSpace(text, pos, end);
      if (after < end) fail(ctx, after, end, 'end of line after the tree (one tree per line)');
      trees.push(tree);
    }
    lineNo++;
    start = nl + 1;
  }
  return trees;
}

/**
 * Where the first ill-formed UTF-8 sequence starts (Unicode table 3-7), or null.
 * Only run after TextDecoder has refused the bytes, to point at the culprit.
 */
function firstBadUtf8(bytes: Uint8Array): { offset: number; found: string } | null {
  const n = bytes.length;
  let i = 0;
  const hex = (b: number) => `byte 0x${b.toString(16).toUpperCase().padStart(2, '0')}`;
  while (i < n) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    // Continuation bytes are 80..BF except right after E0, ED, F0 and F4,
    // where the range is narrowed to exclude overlongs, surrogates and > U+10FFFF.
    let need = 0;
    let lo = 0x80;
    let hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) need = 1;
    else if (b >= 0xe0 && b <= 0xef) need = 2;
    else if (b >= 0xf0 && b <= 0xf4) need = 3;
    else return { offset: i, found: `${hex(b)}, which cannot start a UTF-8 character` };
    if (b === 0xe0) lo = 0xa0;
    else if (b === 0xed) hi = 0x9f;
    else if (b === 0xf0) lo = 0x90;
    else if (b === 0xf4) hi = 0x8f;
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return { offset: i, found: 'end of file inside a UTF-8 character' };
      const c = bytes[i + k]!;
      if (c < lo || c > hi) {
        return { offset: i, found: `${hex(b)} followed by ${hex(c)}, which is not a UTF-8 character` };
      }
      lo = 0x80;
      hi = 0xbf;
    }
    i += need + 1;
  }
  return null;
}

/**
 * Reads a tree file (UTF-8, one tree per line). The file is read as bytes and
 * decoded strictly so that a Latin-1 or binary file is reported where it goes
 * wrong instead of turning into U+FFFD words that silently map to `*UNK*`.
 */
export function readTrees(path: string, options?: Omit<ParseOptions, 'source'>): TreeNode[] {
  const opts = resolveOptions({ ...options, source: path });
  const bytes = readFileNamed(path, 'trees');
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (e) {
    const bad = firstBadUtf8(bytes);
    if (bad === null) {
      // Valid UTF-8 that still fails to decode is too long for one JS string (over 2^29 - 24 code units, ~512 MB).
      const err = e as NodeJS.ErrnoException;
      const wrapped = new Error(`cannot read trees from ${path}: ${err.message}`, { cause: e }) as NodeJS.ErrnoException;
      if (err.code !== undefined) wrapped.code = err.code;
      throw wrapped;
    }
    let line = opts.firstLine;
    let lineStart = 0;
    for (let i = 0; i < bad.offset; i++) {
      if (bytes[i] === LF) {
        line++;
        lineStart = i + 1;
      }
    }
    // Everything before the bad byte is valid UTF-8, so non-continuation bytes count code points.
    let column = 1;
    for (let i = lineStart; i < bad.offset; i++) if ((bytes[i]! & 0xc0) !== 0x80) column++;
    // TextDecoder drops a leading BOM; editors do not count it as a column either.
    if (lineStart === 0 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf && bad.offset >= 3) column--;
    throw new TreeParseError(path, line, column, 'UTF-8 text', bad.found);
  }
  return parseTrees(text, opts);
}

// ---------------------------------------------------------------------------
// Writing and walking

/**
 * PTB form with single spaces, the inverse of parseTree on canonical input.
 * `labelOf` lets callers write predicted labels instead of the gold ones;
 * `wordOf` writes each word another way (e.g. JSON-quoted, for a form that
 * any word fits but that is not PTB), instead of verbatim.
 */
export function formatTree(tree: TreeNode, labelOf?: (node: TreeNode) => number, wordOf?: (word: string) => string): string {
  const parts: string[] = [];
  // A pending item is a node to write or a literal piece of text.
  const stack: (TreeNode | string)[] = [tree];
  while (stack.length > 0) {
    const item = stack.pop()!;
    if (typeof item === 'string') {
      parts.push(item);
      continue;
    }
    const label = labelOf ? labelOf(item) : item.label;
    if (isLeaf(item)) {
      if (wordOf) {
        parts.push(`(${label} ${wordOf(item.word)})`);
        continue;
      }
      // parseTree never makes such a word; a tree built in code can, and its PTB form would not parse back.
      // ASCII whitespace only, as the reader splits: SST has a token with a non-breaking space inside.
      if (item.word === '' || /[() \t\n\r\f\v]/.test(item.word)) {
        throw new RangeError(`cannot write the word ${JSON.stringify(item.word)} in PTB form: a leaf's word must be non-empty, without parentheses or ASCII whitespace`);
      }
      parts.push(`(${label} ${item.word})`);
    } else {
      parts.push(`(${label} `);
      stack.push(')', item.right, ' ', item.left);
    }
  }
  return parts.join('');
}

/** The leaves, left to right. */
export function leaves(tree: TreeNode): LeafNode[] {
  const out: LeafNode[] = [];
  const stack: TreeNode[] = [tree];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (isLeaf(node)) out.push(node);
    else stack.push(node.right, node.left);
  }
  return out;
}

export function countNodes(tree: TreeNode): { leaves: number; internal: number } {
  let leafCount = 0;
  let internal = 0;
  const stack: TreeNode[] = [tree];
  while (stack.length > 0) {
    const node = stack.pop()!;
    if (isLeaf(node)) {
      leafCount++;
    } else {
      internal++;
      stack.push(node.right, node.left);
    }
  }
  return { leaves: leafCount, internal };
}

/** Edges on the longest root-to-leaf path; a lone leaf has height 0. */
export function treeHeight(tree: TreeNode): number {
  let height = 0;
  const nodes: TreeNode[] = [tree];
  const depths: number[] = [0];
  while (nodes.length > 0) {
    const node = nodes.pop()!;
    const depth = depths.pop()!;
    if (isLeaf(node)) {
      if (depth > height) height = depth;
    } else {
      nodes.push(node.left, node.right);
      depths.push(depth + 1, depth + 1);
    }
  }
  return height;
}
