import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const root = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-prebuild-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the prebuilt binary', () => {
  it('npm run prebuild makes a stripped N-API binary that loads with no build directory', () => {
    const args = ['--out', path.join(tmp, 'prebuilds'), '--build-dir', path.join(tmp, 'build')];
    const made = spawnSync(process.execPath, [path.join(root, 'scripts/prebuild.js'), ...args], { encoding: 'utf8' });
    expect(made.status, made.stderr + made.stdout).toBe(0);
    const dir = path.join(tmp, 'prebuilds', `${process.platform}-${process.arch}`);
    const files = fs.readdirSync(dir);
    expect(files).toEqual([expect.stringMatching(/^rntn\.napi(\.glibc|\.musl)?\.node$/)]);

    // A package as npm would unpack it: lib/, scripts/, prebuilds/ and dependencies, but no build/.
    const pkg = path.join(tmp, 'package');
    fs.mkdirSync(path.join(pkg, 'scripts'), { recursive: true });
    fs.cpSync(path.join(root, 'lib'), path.join(pkg, 'lib'), { recursive: true });
    fs.cpSync(path.join(tmp, 'prebuilds'), path.join(pkg, 'prebuilds'), { recursive: true });
    fs.copyFileSync(path.join(root, 'package.json'), path.join(pkg, 'package.json'));
    fs.copyFileSync(path.join(root, 'scripts/install.js'), path.join(pkg, 'scripts/install.js'));
    fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
    expect(fs.existsSync(path.join(pkg, 'build'))).toBe(false);

    const probe = `
      const found = require('node-gyp-build').path(${JSON.stringify(pkg)});
      const { blasInfo, createWorkspace } = require(${JSON.stringify(path.join(pkg, 'lib/native.js'))});
      console.log(JSON.stringify({ found, corename: blasInfo().corename, workspace: typeof createWorkspace().forward }));`;
    const loaded = spawnSync(process.execPath, ['-e', probe], { encoding: 'utf8' });
    expect(loaded.status, loaded.stderr).toBe(0);
    const result = JSON.parse(loaded.stdout);
    expect(result.found).toBe(path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`, files[0]));
    expect(result.corename).toMatch(/\w+/);
    expect(result.workspace).toBe('function');

    // The install step takes the prebuild instead of compiling.
    const install = spawnSync(process.execPath, [path.join(pkg, 'scripts/install.js')], { encoding: 'utf8' });
    expect(install.status, install.stderr).toBe(0);
    expect(install.stdout).toMatch(/using the prebuilt native addon/);
  });
});
