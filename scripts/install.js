#!/usr/bin/env node
// npm's install step: use a prebuilt binary when one fits this platform and
// loads, otherwise build the addon from source with cmake-js against the
// system OpenBLAS. (node-gyp-build's own install command only knows node-gyp.)
'use strict';
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function prebuiltLoads() {
  try {
    const found = require('node-gyp-build').path(root);
    if (!found.includes(`${path.sep}prebuilds${path.sep}`)) return false;
    require(found);
    return true;
  } catch {
    return false;
  }
}

if (process.env.RNTN_BUILD_FROM_SOURCE !== '1' && prebuiltLoads()) {
  console.log('rntn: using the prebuilt native addon');
  process.exit(0);
}
const cmakeJs = require.resolve('cmake-js/bin/cmake-js');
const result = spawnSync(process.execPath, [cmakeJs, 'compile'], { cwd: root, stdio: 'inherit' });
if (result.status !== 0) {
  console.error(
    'rntn: building the native addon failed. It needs cmake, a C++17 compiler and the OpenBLAS development files\n' +
      '      (Debian/Ubuntu: apt-get install -y cmake g++ libopenblas-dev).',
  );
  process.exit(result.status ?? 1);
}
