import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { syntheticSplits } from '../src/synthetic';
import { formatTree } from '../src/tree';

// The benchmarks are not timed here (speed is theirs to measure, on SST):
// each runs once, as small as its options allow, on a tiny synthetic
// treebank, so that a change to the API they call breaks a test rather than
// the next person's measurement. (Session 7 removed a function
// bench/compare-addons.js still called, and nothing noticed.)
const root = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-bench-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const splits = syntheticSplits(5);
for (const [name, trees] of [['train', splits.train.slice(0, 120)], ['dev', splits.dev.slice(0, 30)], ['test', splits.test.slice(0, 30)]] as const) {
  fs.writeFileSync(path.join(tmp, `${name}.txt`), trees.map((t) => formatTree(t)).join('\n') + '\n');
}
const train = path.join(tmp, 'train.txt');
const addon = path.join(root, 'build', 'Release', 'rntn.node');

const cases: [string, string[], RegExp][] = [
  ['forward-backward.js', ['--passes', '1', '--dims', '4', '--train', train], /d=4: \d+ sentences\/s, .* ratio /],
  ['train-epochs.js', ['--threads', '1,2', '--rounds', '1', '--epochs', '2', '--dim', '4', '--train', train], /\| 4 \| 2 \| \d+ \|.*\| [\d.]+× \(per round/],
  ['compare-addons.js', [addon, addon, '--passes', '2', '--train', train], /whole step: B\/A [\d.]+/],
  [
    'compare-trainers.js',
    [root, root, '--threads', '2', '--rounds', '1', '--train', train, '--options', '{"polarityWeight":1}'],
    /options \{"polarityWeight":1\} over each build's defaults[\s\S]*median A \d+, B \d+ sentences\/s/,
  ],
  ['sst-train.js', ['--seeds', '1', '--epochs', '2', '--dim', '4', '--threads', '2', '--sst', tmp], /\| mean \| [\d.]+ \|/],
  ['sst-train.js', ['--seeds', '1', '--epochs', '2', '--dim', '4', '--threads', '2', '--sst', tmp, '--teachers', '2'], /its 2 teachers' ensemble: test all [\d.]+/],
];

describe('the benchmarks run', () => {
  for (const [script, args, expected] of cases) {
    it(script, () => {
      const run = spawnSync(process.execPath, [path.join(root, 'bench', script), ...args], { encoding: 'utf8', timeout: 120_000 });
      expect(run.stderr + run.stdout).not.toMatch(/Error/);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toMatch(expected);
    });
  }
});
