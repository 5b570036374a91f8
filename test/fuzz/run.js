#!/usr/bin/env node
'use strict';
/**
 * Fuzzes the tree reader and the model loader of the compiled package (lib/).
 *
 *   npm run fuzz -- --trees 100000 --models 10000 --seed 1
 *   node test/fuzz/run.js --seed 1 --replay tree:123     (one case, in this process, with details)
 *
 * Options: --trees N, --models N, --seed S, --case-limit-ms MS (a slower case
 * fails; default 10000), --hang-ms MS (a case still running after this is
 * killed and reported as a hang; default 60000), --max-depth N (cap on the
 * nesting of deep tree cases; default 1,000,000), --out DIR (where failing
 * inputs go; default build/fuzz-failures), --replay tree:I|model:I.
 *
 * Cases run in a worker thread so that the main thread can watch them: a hang
 * (the worker stops reporting progress), a stack overflow that escapes, or a
 * worker that dies (e.g. out of memory) is recorded against the case it was
 * running, and the campaign resumes at the next case in a fresh worker.
 * Exits 1 on any failure.
 */
const path = require('node:path');
const fs = require('node:fs');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');

const ROOT = path.resolve(__dirname, '../..');

function loadApi() {
  const lib = path.join(ROOT, 'lib');
  if (!fs.existsSync(path.join(lib, 'tree.js'))) {
    console.error('lib/ is missing: run `npx tsc -p tsconfig.json` first (npm run fuzz does)');
    process.exit(2);
  }
  // Single modules rather than lib/index.js, which would load the native addon for nothing.
  return {
    tree: require(path.join(lib, 'tree.js')),
    modelFile: require(path.join(lib, 'model-file.js')),
    model: require(path.join(lib, 'model.js')),
    vocab: require(path.join(lib, 'vocab.js')),
    random: require(path.join(lib, 'random.js')),
    synthetic: require(path.join(lib, 'synthetic.js')),
  };
}

const oracle = require('./oracle');

// ---------------------------------------------------------------------------
// Worker: runs a stretch of cases, publishing the current case index

if (!isMainThread) {
  const { kind, seed, start, count, maxDepth, caseLimitMs, shared, tmpDir } = workerData;
  const api = loadApi();
  const current = new Int32Array(shared);
  const prepared = oracle.prepare(api, kind, { seed, projectRoot: ROOT });
  if (kind === 'tree') parentPort.postMessage({ type: 'corpus', source: prepared.corpus.source, lines: prepared.corpus.lines.length });
  const stats = oracle.runCases(api, kind, {
    seed,
    start,
    count,
    prepared,
    tmpDir,
    maxDepth,
    caseLimitMs,
    onCase: (index) => Atomics.store(current, 0, index),
    // At once, not with the next progress report: a failure must survive the worker dying soon after.
    onFailure: (failure) => parentPort.postMessage({ type: 'failure', failure }),
    // The whole tally, so that the cases before a hang or a crash still count.
    onProgress: (s) => parentPort.postMessage({ type: 'progress', stats: s }),
  });
  parentPort.postMessage({ type: 'done', stats });
  return;
}

// ---------------------------------------------------------------------------
// Main thread

function parseArgs(argv) {
  const opts = { trees: 0, models: 0, seed: 1, caseLimitMs: 10_000, hangMs: 60_000, maxDepth: 1_000_000, out: path.join(ROOT, 'build/fuzz-failures'), replay: null };
  const names = { '--trees': 'trees', '--models': 'models', '--seed': 'seed', '--case-limit-ms': 'caseLimitMs', '--hang-ms': 'hangMs', '--max-depth': 'maxDepth', '--out': 'out', '--replay': 'replay' };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=', 2);
    const key = names[flag];
    if (key === undefined) {
      console.error(`unknown option ${argv[i]}\nusage: run.js [--trees N] [--models N] [--seed S] [--case-limit-ms MS] [--hang-ms MS] [--max-depth N] [--out DIR] [--replay tree:I|model:I]`);
      process.exit(2);
    }
    const value = inline ?? argv[++i];
    if (value === undefined) {
      console.error(`${flag} needs a value`);
      process.exit(2);
    }
    if (key === 'out' || key === 'replay') opts[key] = value;
    else {
      const n = Number(value);
      if (!Number.isSafeInteger(n) || n < 0) {
        console.error(`${flag} must be a non-negative integer, got ${value}`);
        process.exit(2);
      }
      opts[key] = n;
    }
  }
  if (opts.trees === 0 && opts.models === 0 && opts.replay === null) {
    opts.trees = 10_000;
    opts.models = 1_000;
  }
  return opts;
}

function merge(total, part) {
  total.run += part.run;
  for (const [name, c] of Object.entries(part.categories)) {
    const t = (total.categories[name] ??= { run: 0, parsed: 0, rejected: 0, failed: 0, ms: 0 });
    for (const k of Object.keys(t)) t[k] += c[k];
  }
  total.failures.push(...part.failures);
  if (part.slowest && (!total.slowest || part.slowest.ms > total.slowest.ms)) total.slowest = part.slowest;
  total.slowestCallMs = Math.max(total.slowestCallMs, part.slowestCallMs);
  total.maxArrayBuffers = Math.max(total.maxArrayBuffers, part.maxArrayBuffers);
  total.maxRss = Math.max(total.maxRss, part.maxRss);
  total.longestMessage = Math.max(total.longestMessage, part.longestMessage);
}

/** Runs one worker over [start, end); resolves with its stats, or with the case it died on. */
function runWorker(kind, opts, start, end, log) {
  return new Promise((resolve) => {
    const shared = new SharedArrayBuffer(4);
    const current = new Int32Array(shared);
    Atomics.store(current, 0, start);
    // Made and removed here: a worker that is terminated never runs its own cleanup.
    const tmpDir = oracle.makeTmpDir();
    const worker = new Worker(__filename, {
      workerData: { kind, seed: opts.seed, start, count: end - start, maxDepth: opts.maxDepth, caseLimitMs: opts.caseLimitMs, shared, tmpDir },
      // A runaway allocation should end this worker, not the whole campaign.
      resourceLimits: { maxOldGenerationSizeMb: 4096 },
    });
    let settled = false;
    let partial = null;
    const failures = [];
    let reported = Math.floor((10 * start) / end);
    let lastIndex = start;
    let lastChange = Date.now();
    const settle = (value) => {
      if (settled) return;
      settled = true;
      clearInterval(watch);
      // After the worker has stopped, so that no case is still writing into the directory.
      worker.terminate().finally(() => {
        fs.rmSync(tmpDir, { recursive: true, force: true });
        resolve(value);
      });
    };
    const watch = setInterval(() => {
      const index = Atomics.load(current, 0);
      if (index !== lastIndex) {
        lastIndex = index;
        lastChange = Date.now();
      } else if (Date.now() - lastChange > opts.hangMs) {
        const index = Atomics.load(current, 0);
        settle({ died: { index, why: `no progress for ${opts.hangMs} ms (hang)` }, partial, failures });
      }
    }, 200);
    worker.on('message', (m) => {
      if (m.type === 'done') settle({ stats: m.stats });
      else if (m.type === 'failure') failures.push(m.failure);
      else if (m.type === 'corpus') log(`corpus: ${m.lines} lines from ${m.source}`);
      else if (m.type === 'progress') {
        partial = m.stats;
        // A live counter on a terminal; in a log, a line every tenth of the way.
        const done = start + m.stats.run;
        if (process.stderr.isTTY) process.stderr.write(`\r${kind}: ${done}/${end} cases, ${m.stats.failures.length} failing   `);
        else if (Math.floor((10 * done) / end) > reported) {
          reported = Math.floor((10 * done) / end);
          process.stderr.write(`${kind}: ${done}/${end} cases, ${m.stats.failures.length} failing\n`);
        }
      }
    });
    worker.on('error', (e) => settle({ died: { index: Atomics.load(current, 0), why: `worker error: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : e}` }, partial, failures }));
    worker.on('exit', (code) => settle({ died: { index: Atomics.load(current, 0), why: `worker exited with code ${code}` }, partial, failures }));
  });
}

async function campaign(kind, count, opts, log) {
  const total = oracle.emptyStats(kind, opts.seed);
  const t0 = Date.now();
  let start = 0;
  while (start < count) {
    const r = await runWorker(kind, opts, start, count, log);
    if (r.stats) {
      merge(total, r.stats);
      break;
    }
    // The last progress report holds the tally up to a quarter of a second before the death; the rest is lost
    // from the counts, but not from the failures, which were sent one by one.
    if (r.partial) merge(total, { ...r.partial, failures: [] });
    total.failures.push(...r.failures);
    log(`\n${kind} case ${r.died.index}: ${r.died.why}; restarting at ${r.died.index + 1}`);
    total.failures.push({ kind, seed: opts.seed, index: r.died.index, category: '?', problems: [r.died.why] });
    total.run++;
    total.lost = (total.lost ?? 0) + (r.died.index - start - (r.partial ? r.partial.run : 0));
    start = r.died.index + 1;
  }
  if (process.stderr.isTTY) process.stderr.write('\r' + ' '.repeat(60) + '\r');
  total.ms = Date.now() - t0;
  return total;
}

function report(stats, opts, api, log) {
  const label = stats.kind === 'tree' ? ['parsed', 'rejected'] : ['loaded', 'rejected'];
  log(`\n${stats.kind} fuzzing: ${stats.run} cases in ${(stats.ms / 1000).toFixed(1)} s, seed ${opts.seed}`);
  if (stats.lost) log(`  (${stats.lost} cases ran in workers that died; they are not in the counts below)`);
  log(`  ${'category'.padEnd(14)} ${'cases'.padStart(8)} ${label[0].padStart(8)} ${label[1].padStart(8)} ${'failed'.padStart(7)} ${'time s'.padStart(7)}`);
  const rows = Object.entries(stats.categories).sort(([a], [b]) => a.localeCompare(b));
  let parsed = 0;
  let rejected = 0;
  for (const [name, c] of rows) {
    parsed += c.parsed;
    rejected += c.rejected;
    log(`  ${name.padEnd(14)} ${String(c.run).padStart(8)} ${String(c.parsed).padStart(8)} ${String(c.rejected).padStart(8)} ${String(c.failed).padStart(7)} ${(c.ms / 1000).toFixed(1).padStart(7)}`);
  }
  log(`  ${'total'.padEnd(14)} ${String(stats.run).padStart(8)} ${String(parsed).padStart(8)} ${String(rejected).padStart(8)} ${String(stats.failures.length).padStart(7)}`);
  if (stats.slowest) {
    const s = stats.slowest;
    const calls = stats.kind === 'tree' ? ' (summed over parseTrees, parseTree and readTrees)' : '';
    log(`  slowest case: #${s.index} (${s.category}${s.note ? `, ${s.note}` : ''}, ${s.size} ${stats.kind === 'tree' ? 'characters/bytes' : 'bytes'}): ${s.ms.toFixed(1)} ms in rntn${calls}`);
    log(`  slowest single call: ${stats.slowestCallMs.toFixed(1)} ms`);
  }
  if (stats.kind === 'model') {
    log(`  largest growth during one decode: arrayBuffers ${(stats.maxArrayBuffers / 1024).toFixed(0)} KiB, RSS ${(stats.maxRss / 1024 / 1024).toFixed(1)} MiB; longest error message ${stats.longestMessage} characters`);
  }
  if (stats.failures.length > 0) {
    const prepared = oracle.prepare(api, stats.kind, { seed: opts.seed, projectRoot: ROOT });
    for (const f of stats.failures.slice(0, 20)) {
      let input = '(input not written)';
      try {
        input = oracle.writeFailure(api, opts.out, f, prepared, { maxDepth: opts.maxDepth });
      } catch (e) {
        input = `(could not write the input: ${e.message})`;
      }
      const info = fs.existsSync(input.replace(/\.[a-z]+$/, '.json')) ? JSON.parse(fs.readFileSync(input.replace(/\.[a-z]+$/, '.json'), 'utf8')) : f;
      log(`  FAIL seed ${f.seed} ${f.kind} case ${f.index} (${info.category}${info.note ? `, ${info.note}` : ''}):`);
      for (const p of f.problems) log(`    ${p}`);
      log(`    input: ${path.relative(process.cwd(), input)}; replay: node test/fuzz/run.js --seed ${f.seed} --max-depth ${opts.maxDepth} --replay ${f.kind}:${f.index}`);
    }
    if (stats.failures.length > 20) log(`  … and ${stats.failures.length - 20} more failures`);
  }
}

function replay(api, opts) {
  const [kind, indexText] = opts.replay.split(':');
  const index = Number(indexText);
  if ((kind !== 'tree' && kind !== 'model') || !Number.isSafeInteger(index) || index < 0) {
    console.error('--replay takes tree:INDEX or model:INDEX');
    process.exit(2);
  }
  const prepared = oracle.prepare(api, kind, { seed: opts.seed, projectRoot: ROOT });
  const c = oracle.makeCase(api, kind, prepared, opts.seed, index, { maxDepth: opts.maxDepth });
  const tmpDir = oracle.makeTmpDir();
  try {
    const size = c.text !== undefined ? `${c.text.length} characters` : `${c.bytes.length} bytes`;
    console.log(`${kind} case ${index}, seed ${opts.seed}: ${c.category}${c.note ? ` (${c.note})` : ''}, ${size}${c.expect ? `, expect ${c.expect}` : ''}`);
    if (c.text !== undefined && c.text.length <= 2000) console.log(`text: ${JSON.stringify(c.text)}`);
    const r = oracle.runCase(api, kind, c, tmpDir);
    console.log(`outcome: ${r.outcome} in ${r.ms.toFixed(1)} ms`);
    for (const p of r.problems) console.log(`PROBLEM: ${p}`);
    if (r.problems.length > 0) {
      const input = oracle.writeFailure(api, opts.out, { kind, seed: opts.seed, index, category: c.category, note: c.note, problems: r.problems }, prepared, { maxDepth: opts.maxDepth });
      console.log(`input written to ${input}`);
    }
    process.exitCode = r.problems.length > 0 ? 1 : 0;
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const api = loadApi();
  if (opts.replay !== null) return replay(api, opts);
  const log = (line) => console.log(line);
  const t0 = Date.now();
  log(`rntn fuzz: ${opts.trees} tree cases, ${opts.models} model cases, seed ${opts.seed}, case limit ${opts.caseLimitMs} ms, hang limit ${opts.hangMs} ms, max depth ${opts.maxDepth}`);
  let failures = 0;
  // One campaign at a time: the machine's cores are shared.
  for (const [kind, count] of [['tree', opts.trees], ['model', opts.models]]) {
    if (count === 0) continue;
    const stats = await campaign(kind, count, opts, log);
    report(stats, opts, api, log);
    failures += stats.failures.length;
  }
  log(`\ntotal wall time ${((Date.now() - t0) / 1000).toFixed(1)} s; ${failures === 0 ? 'no failures' : `${failures} FAILURES`}`);
  process.exitCode = failures === 0 ? 0 : 1;
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
