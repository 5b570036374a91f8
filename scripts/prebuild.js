#!/usr/bin/env node
// npm run prebuild [-- --out DIR] [--build-dir DIR]: the N-API binary that
// ships in the package. --build-dir keeps the compile away from build/, the
// addon everything else loads (the test suite builds into a temporary one, so
// no test can load a half-written build/Release/rntn.node).
//
// prebuildify has no cmake-js backend, so this does its job directly: build
// a Release addon with cmake-js, strip it, and put it where node-gyp-build
// looks — prebuilds/<platform>-<arch>/rntn.napi.<libc>.node. The "napi" tag
// makes it load on every Node version with N-API 8; the libc tag keeps a
// glibc build away from musl systems.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');

const root = path.resolve(__dirname, '..');
const { values } = parseArgs({
  options: {
    out: { type: 'string', default: path.join(root, 'prebuilds') },
    'build-dir': { type: 'string', default: path.join(root, 'build') },
  },
});
const buildDir = path.resolve(values['build-dir']);

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`prebuild: ${cmd} ${args.join(' ')} failed`);
    process.exit(r.status ?? 1);
  }
}

run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--config', 'Release', '--out', buildDir]);
const built = path.join(buildDir, 'Release', 'rntn.node');
const libc = process.platform === 'linux' ? (fs.existsSync('/etc/alpine-release') ? '.musl' : '.glibc') : '';
const dir = path.join(path.resolve(values.out), `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
const target = path.join(dir, `rntn.napi${libc}.node`);
fs.copyFileSync(built, target);
if (process.platform !== 'win32') run('strip', [process.platform === 'darwin' ? '-x' : '--strip-unneeded', target]);
console.log(`prebuild: ${path.relative(root, target)} (${fs.statSync(target).size} bytes)`);
