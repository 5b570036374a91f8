'use strict';
/**
 * Runs fuzz cases against rntn and judges the outcome.
 *
 * "Did not crash" is a weak oracle: a reader that rejected every line, or
 * pointed every error at column 1, would pass it. So tree cases are also
 * checked against an independent reference parser written for this file
 * (token-based where rntn's reader is character-based): both must accept the
 * same lines, produce the same trees, and report the same line and column.
 * Model cases carry an expectation from their generator (must load, must be
 * refused, or either), and whatever loads must survive a save/load round trip.
 *
 * `api` is the set of rntn modules under test, passed in so that the script
 * can test the compiled `lib/` and vitest the `src/` sources:
 * `{ tree, modelFile, model, vocab, random, synthetic }`.
 */
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { treeCase, modelCase, loadTreeCorpus, makeModelPool } = require('./mutators');

// ---------------------------------------------------------------------------
// The reference tree parser

const isSpace = (c) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0b || c === 0x0c || c === 0x0d;
const OPEN = 0x28;
const CLOSE = 0x29;

/**
 * One line of the grammar from DESIGN.md, read as tokens: "(", ")" and words
 * (maximal runs of anything else). Returns null for a blank line, the
 * canonical form of the tree, or the UTF-16 offset where the line goes wrong.
 * Positions follow the contract's rules: a label starts right after its "(",
 * whitespace follows a label, a NUL may not be part of a label or word.
 */
function referenceLine(s, classes) {
  const n = s.length;
  let p = 0;
  let type = '';
  let start = 0;
  let end = 0;
  let spaced = false;
  const next = () => {
    const from = p;
    while (p < n && isSpace(s.charCodeAt(p))) p++;
    spaced = p > from;
    start = p;
    if (p >= n) type = 'end';
    else if (s.charCodeAt(p) === OPEN || s.charCodeAt(p) === CLOSE) {
      type = s[p];
      p++;
    } else {
      type = 'word';
      while (p < n) {
        const c = s.charCodeAt(p);
        if (isSpace(c) || c === OPEN || c === CLOSE) break;
        p++;
      }
    }
    end = p;
  };
  // Within the token only: indexOf from the token to the end of the line would make deep lines quadratic.
  const nulIn = (a, b) => {
    for (let i = a; i < b; i++) if (s.charCodeAt(i) === 0) return i;
    return -1;
  };

  next();
  if (type === 'end') return null;
  const out = [];
  // Finished children of each internal node still open.
  const children = [];
  for (;;) {
    // A tree starts here.
    if (type !== '(') return start;
    const open = start;
    next();
    if (type !== 'word' || spaced) return open + 1;
    let nul = nulIn(start, end);
    if (nul >= 0) return nul;
    const label = s.slice(start, end);
    if (!/^[0-9]+$/.test(label) || Number(label) >= classes) return open + 1;
    next();
    if (!spaced) return start;
    out.push(`(${Number(label)} `);
    if (type === '(') {
      children.push(0);
      continue;
    }
    if (type !== 'word') return start;
    nul = nulIn(start, end);
    if (nul >= 0) return nul;
    out.push(s.slice(start, end));
    next();
    if (type !== ')') return start;
    out.push(')');
    next();
    // A node is complete: close the parents it completes.
    for (;;) {
      if (children.length === 0) return type === 'end' ? out.join('') : start;
      const top = children.length - 1;
      if (children[top] === 0) {
        children[top] = 1;
        out.push(' ');
        if (type !== '(') return start;
        break;
      }
      if (type !== ')') return start;
      children.pop();
      out.push(')');
      next();
    }
  }
}

/** Code points in s[0, pos), lone surrogates counting one each. */
function codePoints(s, pos) {
  let count = 0;
  for (let i = 0; i < pos; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xdc00 && c <= 0xdfff && i > 0) {
      const prev = s.charCodeAt(i - 1);
      if (prev >= 0xd800 && prev <= 0xdbff) continue;
    }
    count++;
  }
  return count;
}

/** `{ ok: true, trees }` (canonical forms) or `{ ok: false, line, column }` of the first bad line. */
function referenceParse(text, classes, firstLine = 1) {
  const trees = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].endsWith('\r') ? lines[i].slice(0, -1) : lines[i];
    const r = referenceLine(line, classes);
    if (r === null) continue;
    if (typeof r === 'number') return { ok: false, line: i + firstLine, column: codePoints(line, r) + 1 };
    trees.push(r);
  }
  return { ok: true, trees };
}

// ---------------------------------------------------------------------------
// Judging tree cases

const strictUtf8 = () => new TextDecoder('utf-8', { fatal: true });

function describeError(e) {
  if (!(e instanceof Error)) return `a non-Error value ${String(e)}`;
  const where = (e.stack ?? '').split('\n').slice(1, 4).map((l) => l.trim()).join(' | ');
  return `${e.name}: ${e.message.slice(0, 300)}${where ? ` (${where})` : ''}`;
}

/** Problems with a TreeParseError as such: its class, fields and message shape. */
function treeErrorProblems(api, label, error, source, inputWellFormed) {
  if (!(error instanceof api.tree.TreeParseError) || error.name !== 'TreeParseError') {
    return [`${label} threw something other than TreeParseError: ${describeError(error)}`];
  }
  const problems = [];
  const { line, column, expected, found } = error;
  if (error.source !== source) problems.push(`${label}: error.source is ${JSON.stringify(error.source)}, not ${JSON.stringify(source)}`);
  if (!Number.isSafeInteger(line) || line < 1 || !Number.isSafeInteger(column) || column < 1) {
    problems.push(`${label}: line ${line} / column ${column} are not positive integers`);
  }
  if (typeof expected !== 'string' || expected === '' || typeof found !== 'string' || found === '') {
    problems.push(`${label}: expected/found missing`);
  }
  if (error.message !== `${source}:${line}:${column}: expected ${expected}, found ${found}`) {
    problems.push(`${label}: message is not "source:line:column: expected …, found …": ${error.message.slice(0, 200)}`);
  }
  // "found" shows at most 40 characters however long the token; a message should never grow with the input.
  if (error.message.length > source.length + 1000) problems.push(`${label}: message is ${error.message.length} characters long`);
  // Cutting a long token for display must not split a surrogate pair. JSON.stringify writes a lone
  // surrogate as an escape such as \ud83d (an odd run of backslashes before the u), so look for that.
  if (inputWellFormed && typeof found === 'string' && /(^|[^\\])(\\\\)*\\ud[89a-f][0-9a-f]{2}/i.test(found)) {
    problems.push(`${label}: "found" shows half a character: ${found.slice(-60)}`);
  }
  return problems;
}

function judgeTrees(api, label, run, expected, source, inputWellFormed = true) {
  if (run.error !== undefined) {
    const problems = treeErrorProblems(api, label, run.error, source, inputWellFormed);
    if (problems.length > 0) return problems;
    const { line, column } = run.error;
    if (expected.ok) return [`${label} rejected what the reference parses: ${run.error.message.slice(0, 200)}`];
    if (line !== expected.line || column !== expected.column) {
      return [`${label} reports ${line}:${column}, the reference ${expected.line}:${expected.column}: ${run.error.message.slice(0, 200)}`];
    }
    return [];
  }
  const trees = run.value;
  if (!expected.ok) return [`${label} parsed what the reference rejects at ${expected.line}:${expected.column}`];
  if (!Array.isArray(trees) || trees.length !== expected.trees.length) {
    return [`${label} returned ${Array.isArray(trees) ? trees.length : typeof trees} trees, the reference ${expected.trees.length}`];
  }
  for (let i = 0; i < trees.length; i++) {
    const got = api.tree.formatTree(trees[i]);
    if (got !== expected.trees[i]) return [`${label}: tree ${i + 1} differs from the reference: ${got.slice(0, 120)} vs ${expected.trees[i].slice(0, 120)}`];
  }
  return [];
}

/** Byte offset of (line, column) as readTrees counts them: code points, after a leading BOM on line 1. */
function byteOffsetOf(bytes, line, column) {
  let i = 0;
  for (let l = 1; l < line; l++) {
    const nl = bytes.indexOf(0x0a, i);
    if (nl < 0) return -1;
    i = nl + 1;
  }
  if (line === 1 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3;
  for (let c = 1; c < column; c++) {
    if (i >= bytes.length || bytes[i] === 0x0a) return -1;
    const b = bytes[i];
    i += b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : 2;
  }
  return i;
}

/**
 * An invalid-UTF-8 error must point at the first ill-formed sequence: all
 * bytes before it decode, and no well-formed character starts at it. Between
 * them the two conditions pin the position down exactly.
 */
function judgeUtf8Error(api, run, bytes, source, firstLine) {
  if (run.error === undefined) return ['readTrees accepted a file that is not UTF-8'];
  const problems = treeErrorProblems(api, 'readTrees', run.error, source, true);
  if (problems.length > 0) return problems;
  const { line, column, expected } = run.error;
  if (expected !== 'UTF-8 text') return [`readTrees: a file that is not UTF-8 gave "${run.error.message.slice(0, 200)}"`];
  const at = byteOffsetOf(bytes, line - firstLine + 1, column);
  if (at < 0 || at >= bytes.length) return [`readTrees: ${line}:${column} is not a position in the file`];
  const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  try {
    decoder.decode(bytes.subarray(0, at));
  } catch {
    return [`readTrees: ${line}:${column} (byte ${at}) is not the first bad byte: the file goes wrong before it`];
  }
  for (let k = 1; k <= 4 && at + k <= bytes.length; k++) {
    try {
      if ([...decoder.decode(bytes.subarray(at, at + k))].length === 1) {
        return [`readTrees: ${line}:${column} (byte ${at}) starts a valid character`];
      }
    } catch {
      // Not a character of k bytes; try the next length.
    }
  }
  return [];
}

/** Time spent inside rntn: the sum over a case's calls, and the longest single call. */
function timer() {
  let ms = 0;
  let maxCallMs = 0;
  return {
    run(f) {
      const t0 = process.hrtime.bigint();
      try {
        return { value: f() };
      } catch (error) {
        return { error };
      } finally {
        const took = Number(process.hrtime.bigint() - t0) / 1e6;
        ms += took;
        maxCallMs = Math.max(maxCallMs, took);
      }
    },
    get ms() {
      return ms;
    },
    get maxCallMs() {
      return maxCallMs;
    },
  };
}

/**
 * A fresh file each time: overwriting one makes ext4 flush it to disk on close
 * (auto_da_alloc, meant for editors that rewrite files in place), ~2 ms a case.
 */
function writeCaseFile(file, bytes) {
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, bytes);
}

function runTreeBytes(api, bytes, { classes, firstLine }, file, clock, problems) {
  writeCaseFile(file, bytes);
  const run = clock.run(() => api.tree.readTrees(file, { classes, firstLine }));
  let text = null;
  try {
    text = strictUtf8().decode(bytes);
  } catch {
    // Not UTF-8: readTrees must say so.
  }
  problems.push(...(text === null ? judgeUtf8Error(api, run, bytes, file, firstLine) : judgeTrees(api, 'readTrees', run, referenceParse(text, classes, firstLine), file)));
  return run.error === undefined ? 'parsed' : 'rejected';
}

/**
 * Runs one tree case: text through parseTrees (and, for a single line,
 * parseTree), then as a UTF-8 file through readTrees; bytes only through
 * readTrees. `ms` is the time spent inside rntn.
 */
function runTreeCase(api, c, tmpDir) {
  const clock = timer();
  const problems = [];
  const file = path.join(tmpDir, 'case.txt');
  let outcome;
  if (c.text !== undefined) {
    const source = '<fuzz>';
    const options = { source, classes: c.classes, firstLine: c.firstLine };
    const expected = referenceParse(c.text, c.classes, c.firstLine);
    const run = clock.run(() => api.tree.parseTrees(c.text, options));
    const wellFormed = c.text.isWellFormed();
    problems.push(...judgeTrees(api, 'parseTrees', run, expected, source, wellFormed));
    outcome = run.error === undefined ? 'parsed' : 'rejected';
    // parseTree reads a whole string as one tree; on a single non-blank line it must agree with parseTrees.
    if (!c.text.includes('\n') && !(expected.ok && expected.trees.length === 0)) {
      const single = clock.run(() => api.tree.parseTree(c.text, options));
      const asList = single.error === undefined ? { value: [single.value] } : single;
      // A trailing CR is part of parseTree's input but not of parseTrees' line, which moves "end" by one column.
      const adjusted = !expected.ok && c.text.endsWith('\r') && single.error?.column === expected.column + 1 ? { ...expected, column: expected.column + 1 } : expected;
      problems.push(...judgeTrees(api, 'parseTree', asList, adjusted, source, wellFormed));
    }
    if (wellFormed) runTreeBytes(api, Buffer.from(c.text, 'utf8'), c, file, clock, problems);
  } else {
    outcome = runTreeBytes(api, c.bytes, c, file, clock, problems);
  }
  return { outcome, ms: clock.ms, maxCallMs: clock.maxCallMs, problems };
}

// ---------------------------------------------------------------------------
// Judging model cases

const MiB = 1024 * 1024;

function sameBits(a, b) {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function modelProblems(api, decoded, c) {
  const problems = [];
  const { model, extraMetadata } = decoded;
  if (!(model instanceof api.model.Model)) return ['decode returned something other than a Model'];
  const { dim, classes } = model.config;
  if (model.layout.size !== model.params.length || model.vocab.size !== model.layout.vocabSize) problems.push('layout and parameters disagree');
  for (let i = 0; i < model.params.length; i++) {
    if (!Number.isFinite(model.params[i])) {
      problems.push(`parameter ${i} is ${model.params[i]}`);
      break;
    }
  }
  if (c.sameValues) {
    const base = c.base.model;
    if (!sameBits(model.params, base.params)) problems.push('loaded parameters differ from the file written');
    if (dim !== base.config.dim || classes !== base.config.classes || model.config.leaf !== base.config.leaf) problems.push('loaded config differs');
    if (JSON.stringify(model.vocab.words) !== JSON.stringify(base.vocab.words)) problems.push('loaded vocabulary differs');
  }
  // Whatever loads must save and load again to the same model.
  try {
    const again = api.modelFile.decodeModelFile(api.modelFile.encodeModel(model, extraMetadata), 'round-trip').model;
    if (!sameBits(again.params, model.params) || JSON.stringify(again.vocab.words) !== JSON.stringify(model.vocab.words)) {
      problems.push('save/load round trip changed the model');
    }
  } catch (e) {
    problems.push(`save/load round trip failed: ${describeError(e)}`);
  }
  return problems;
}

/**
 * Runs one model case through decodeModelFile (or loadModelFile for the cases
 * marked viaFile) and measures what the decode allocated: typed arrays count
 * in `arrayBuffers`, so a buffer sized from an unchecked header value shows
 * there even when the OS never maps its pages.
 */
function runModelCase(api, c, tmpDir) {
  const file = path.join(tmpDir, 'case.safetensors');
  const source = c.viaFile ? file : `fuzz-model-${c.index}.safetensors`;
  if (c.viaFile) writeCaseFile(file, c.bytes);
  const before = process.memoryUsage();
  const clock = timer();
  const run = clock.run(() => (c.viaFile ? api.modelFile.loadModelFile(file) : api.modelFile.decodeModelFile(c.bytes, source)));
  const after = process.memoryUsage();
  const size = c.bytes.length;
  const memory = { arrayBuffers: after.arrayBuffers - before.arrayBuffers, rss: after.rss - before.rss };
  const problems = [];
  // Decoded copies of the tensors, the parameter buffer and (viaFile) the file itself: three times the file, bounded
  // at four plus a MiB so that allocator slack does not count as a leak.
  if (memory.arrayBuffers > 4 * size + MiB) {
    problems.push(`decoding a ${size}-byte file grew arrayBuffers by ${memory.arrayBuffers} bytes`);
  }
  // RSS also moves with the JS heap (a JSON header of nested arrays costs ~16x its size), so the bound is loose: it is there for gigabytes.
  if (memory.rss > 32 * size + 512 * MiB) problems.push(`decoding a ${size}-byte file grew RSS by ${memory.rss} bytes`);
  let outcome;
  if (run.error !== undefined) {
    outcome = 'rejected';
    const e = run.error;
    if (!(e instanceof api.modelFile.ModelFileError) || e.name !== 'ModelFileError') {
      problems.push(`threw something other than ModelFileError: ${describeError(e)}`);
    } else if (!e.message.startsWith(`${source}: `) || e.message.length <= source.length + 2) {
      problems.push(`message does not start with the file's name: ${e.message.slice(0, 200)}`);
    } else if (c.expect === 'load') {
      problems.push(`refused a file that follows the contract (${c.note}): ${e.message.slice(0, 300)}`);
    }
  } else {
    outcome = 'loaded';
    if (c.expect === 'reject') problems.push(`loaded a file that breaks the contract (${c.note})`);
    problems.push(...modelProblems(api, run.value, c));
  }
  return { outcome, ms: clock.ms, maxCallMs: clock.maxCallMs, problems, memory, messageLength: run.error?.message?.length ?? 0 };
}

// ---------------------------------------------------------------------------
// Campaigns

function makeTmpDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-fuzz-'));
}

/**
 * What a campaign needs besides the api: the tree corpus or the model pool.
 * Built once per process; both depend only on the project root and the seed.
 */
function prepare(api, kind, { seed, projectRoot }) {
  return kind === 'tree' ? { corpus: loadTreeCorpus(api, projectRoot) } : { pool: makeModelPool(api, seed) };
}

function makeCase(api, kind, prepared, seed, index, options) {
  return kind === 'tree' ? treeCase(api, prepared.corpus, seed, index, options) : modelCase(api, prepared.pool, seed, index, options);
}

function runCase(api, kind, c, tmpDir) {
  return kind === 'tree' ? runTreeCase(api, c, tmpDir) : runModelCase(api, c, tmpDir);
}

function caseSize(c) {
  return c.text !== undefined ? c.text.length : c.bytes.length;
}

/**
 * Runs cases [start, start + count) and tallies them. `onCase(index)` is
 * called before each case (the script's watchdog listens), `onFailure` as
 * soon as a case fails. A case slower than
 * its time budget fails: the reader and the loader are meant to be linear.
 */
/** A tally of no cases; runCases fills one in, run.js merges them. */
function emptyStats(kind, seed) {
  return { kind, seed, run: 0, categories: {}, failures: [], slowest: null, slowestCallMs: 0, maxArrayBuffers: 0, maxRss: 0, longestMessage: 0, ms: 0 };
}

function runCases(api, kind, { seed, start = 0, count, prepared, tmpDir, maxDepth, caseLimitMs = Infinity, categories, onCase, onFailure, onProgress }) {
  const stats = emptyStats(kind, seed);
  const t0 = Date.now();
  let lastProgress = t0;
  for (let index = start; index < start + count; index++) {
    if (onCase) onCase(index);
    const caseStart = process.hrtime.bigint();
    let c;
    let result;
    try {
      // `categories` pins case i to categories[i % n], for tests aimed at one kind of input.
      const category = categories ? categories[index % categories.length] : undefined;
      c = makeCase(api, kind, prepared, seed, index, { maxDepth, category });
      result = runCase(api, kind, c, tmpDir);
    } catch (e) {
      // The harness itself broke (or rntn threw from somewhere the runner does not guard); still a failure to report.
      c = c ?? { index, category: '?' };
      result = { outcome: 'harness-error', ms: 0, maxCallMs: 0, problems: [`harness error: ${describeError(e)}`] };
    }
    // Half a second plus 2 µs per input character/byte, capped at caseLimitMs: a flat limit
    // high enough for a 9 MB line would hide a quadratic blow-up on a 100 kB one.
    const budget = Math.min(caseLimitMs, 500 + 0.002 * (c.text !== undefined || c.bytes !== undefined ? caseSize(c) : 0));
    if (result.ms > budget) result.problems.push(`took ${result.ms.toFixed(0)} ms in rntn, over its ${budget.toFixed(0)} ms budget`);
    const cat = (stats.categories[c.category] ??= { run: 0, parsed: 0, rejected: 0, failed: 0, ms: 0 });
    cat.run++;
    // Wall time of the whole case (generation and judging included), to see where a campaign's time goes.
    cat.ms += Number(process.hrtime.bigint() - caseStart) / 1e6;
    if (result.outcome === 'parsed' || result.outcome === 'loaded') cat.parsed++;
    else cat.rejected++;
    stats.run++;
    if (!stats.slowest || result.ms > stats.slowest.ms) {
      stats.slowest = { index, category: c.category, ms: result.ms, maxCallMs: result.maxCallMs, size: c.text !== undefined || c.bytes !== undefined ? caseSize(c) : 0, note: c.note };
    }
    stats.slowestCallMs = Math.max(stats.slowestCallMs, result.maxCallMs ?? 0);
    if (result.memory) {
      stats.maxArrayBuffers = Math.max(stats.maxArrayBuffers, result.memory.arrayBuffers);
      stats.maxRss = Math.max(stats.maxRss, result.memory.rss);
      stats.longestMessage = Math.max(stats.longestMessage, result.messageLength);
    }
    if (result.problems.length > 0) {
      cat.failed++;
      const failure = { kind, seed, index, category: c.category, note: c.note, problems: result.problems };
      stats.failures.push(failure);
      if (onFailure) onFailure(failure);
    }
    if (onProgress && Date.now() - lastProgress > 250) {
      lastProgress = Date.now();
      onProgress(stats);
    }
  }
  stats.ms = Date.now() - t0;
  return stats;
}

/** Writes a failing case's input (exactly the bytes or text rntn saw) and what went wrong; returns the input's path. */
function writeFailure(api, dir, failure, prepared, options) {
  fs.mkdirSync(dir, { recursive: true });
  const c = makeCase(api, failure.kind, prepared, failure.seed, failure.index, options);
  const stem = path.join(dir, `${failure.kind}-seed${failure.seed}-case${failure.index}`);
  const input = c.text !== undefined ? `${stem}.txt` : `${stem}.${failure.kind === 'tree' ? 'bin' : 'safetensors'}`;
  fs.writeFileSync(input, c.text !== undefined ? Buffer.from(c.text, 'utf8') : c.bytes);
  // A case that killed its worker is only known by index until it is regenerated here.
  const info = { ...failure, category: c.category, note: c.note, classes: c.classes, firstLine: c.firstLine, expect: c.expect, viaFile: c.viaFile, textWellFormed: c.text?.isWellFormed() };
  fs.writeFileSync(`${stem}.json`, JSON.stringify(info, null, 2) + '\n');
  return input;
}

module.exports = {
  emptyStats,
  runCases,
  prepare,
  makeCase,
  runCase,
  makeTmpDir,
  writeFailure,
};
