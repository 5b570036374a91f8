#!/usr/bin/env node
// npm run test:sanitize [-- [--no-build] [test files...]]: the native-facing
// tests against an addon built with AddressSanitizer and
// UndefinedBehaviorSanitizer (CMake option RNTN_SANITIZE).
//
// 1. cmake-js builds the sanitized addon into build-asan/ (build/Release, the
//    normal binary, is left alone).
// 2. tsc compiles lib/ (training workers run lib/worker.js).
// 3. The tests run with
//      LD_PRELOAD=<the compiler's libasan.so>  Node is not built with ASan,
//                          and ASan's runtime must be the first library loaded;
//      RNTN_ADDON=build-asan/Release/rntn.node  src/native.ts loads this
//                          binary instead of build/Release (worker threads and
//                          child processes inherit it);
//      ASAN_OPTIONS=detect_leaks=0  Node, V8 and native modules keep memory
//                          until exit by design (with leak detection on, the
//                          run fails on N-API references that vitest's
//                          bundler, rolldown, never frees);
//      UBSAN_OPTIONS=halt_on_error=1  (the addon is also built with
//                          -fno-sanitize-recover=undefined): a finding aborts
//                          the process, so the run fails.
//    Before the tests, one process checks that the ASan runtime and the
//    sanitized addon (not build/Release's) are what actually got loaded.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const outDir = path.join(root, 'build-asan');
const addon = path.join(outDir, 'Release', 'rntn.node');
const DEFAULT_TESTS = ['test/native.test.ts', 'test/gradient.test.ts', 'test/batch.test.ts', 'test/train.test.ts', 'test/pool.test.ts'];

const args = process.argv.slice(2);
const build = !args.includes('--no-build');
const tests = args.filter((a) => a !== '--no-build');

function run(cmd, cmdArgs, options = {}) {
  const r = spawnSync(cmd, cmdArgs, { cwd: root, stdio: 'inherit', ...options });
  if (r.status !== 0) {
    console.error(`sanitize: ${cmd} ${cmdArgs.join(' ')} failed (${r.signal ?? `exit status ${r.status}`})`);
    process.exit(r.status || 1);
  }
}

if (build) {
  run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', outDir, '--config', 'Release', '--CDRNTN_SANITIZE=ON']);
}
if (!fs.existsSync(addon)) {
  console.error(`sanitize: ${addon} does not exist; run without --no-build`);
  process.exit(1);
}
run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json']);

// The runtime of the compiler that built the addon (the one CMake recorded).
const cache = fs.readFileSync(path.join(outDir, 'CMakeCache.txt'), 'utf8');
const compiler = /^CMAKE_CXX_COMPILER:\w+=(.+)$/m.exec(cache)?.[1] ?? 'c++';
const asked = spawnSync(compiler, ['-print-file-name=libasan.so'], { encoding: 'utf8' });
const libasan = asked.status === 0 ? asked.stdout.trim() : '';
if (!path.isAbsolute(libasan) || !fs.existsSync(libasan)) {
  console.error(`sanitize: ${compiler} does not know where its libasan.so is (got ${JSON.stringify(libasan)})`);
  process.exit(1);
}

const env = {
  ...process.env,
  LD_PRELOAD: [libasan, process.env.LD_PRELOAD].filter(Boolean).join(':'),
  RNTN_ADDON: addon,
  ASAN_OPTIONS: ['detect_leaks=0', process.env.ASAN_OPTIONS].filter(Boolean).join(':'),
  UBSAN_OPTIONS: ['halt_on_error=1', 'print_stacktrace=1', process.env.UBSAN_OPTIONS].filter(Boolean).join(':'),
};

// Prove the set-up: a clean run means nothing if the plain addon was loaded.
const probe = `
  const fs = require('node:fs');
  const { native } = require(${JSON.stringify(path.join(root, 'lib', 'native.js'))});
  native();
  const maps = fs.readFileSync('/proc/self/maps', 'utf8');
  const fail = (m) => { console.error('sanitize: ' + m); process.exit(1); };
  if (!/libasan\\.so/.test(maps)) fail('the ASan runtime is not loaded');
  if (!/libubsan\\.so/.test(maps)) fail('the UBSan runtime is not loaded');
  if (!maps.includes(${JSON.stringify(addon)})) fail('the sanitized addon was not loaded');
  if (maps.includes(${JSON.stringify(path.join(root, 'build', 'Release', 'rntn.node'))})) fail('build/Release/rntn.node was loaded');
`;
run(process.execPath, ['-e', probe], { env });
console.log(`sanitize: ${path.relative(root, addon)} with ${libasan} preloaded`);

// --reporter=default: the JSON report CI reads (build/test-results.json) stays the normal run's.
const vitest = path.join(path.dirname(require.resolve('vitest/package.json')), 'vitest.mjs');
run(process.execPath, [vitest, 'run', '--reporter=default', ...(tests.length > 0 ? tests : DEFAULT_TESTS)], { env });
console.log('sanitize: clean (AddressSanitizer, UndefinedBehaviorSanitizer)');
