import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lossAndGradient } from '../src/gradient';
import { Model, TENSOR_NAMES } from '../src/model';
import { saveModel } from '../src/model-file';
import { decodeSafetensors } from '../src/safetensors';
import { formatTree } from '../src/tree';
import { Vocabulary } from '../src/vocab';
import { randomTrees } from './helpers';

const cli = path.resolve(__dirname, '../lib/cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function rntn(...args: string[]) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
}

const words = ['*UNK*', 'good', 'bad', 'not'];
const model = Model.create(new Vocabulary(words), { dim: 4, seed: 9 });
const modelPath = path.join(tmp, 'm.safetensors');
saveModel(model, modelPath);
const trees = randomTrees(3, 20, [...words, 'unseen']);
const treesPath = path.join(tmp, 'trees.txt');
fs.writeFileSync(treesPath, trees.map((t) => formatTree(t)).join('\n') + '\n');

describe('rntn grad', () => {
  it('writes the summed gradient with the same names and shapes as the model, and the loss as metadata', () => {
    const out = path.join(tmp, 'g.safetensors');
    const run = rntn('grad', '--model', modelPath, '--trees', treesPath, '--out', out);
    expect(run.status, run.stderr).toBe(0);
    const file = decodeSafetensors(fs.readFileSync(out), out);
    const expected = lossAndGradient(model, trees);
    expect(Number(file.metadata.loss)).toBeCloseTo(expected.loss, 3);
    expect([...file.tensors.keys()].sort()).toEqual([...TENSOR_NAMES].sort());
    for (const name of TENSOR_NAMES) {
      const t = file.tensors.get(name)!;
      expect(t.dtype).toBe('F32');
      expect(t.shape).toEqual(model.layout.shapes[name]);
      expect(Array.from(t.data)).toEqual(Array.from(expected.tensors[name]));
    }
  });

  it('writes float64 gradients with --precision float64', () => {
    const out = path.join(tmp, 'g64.safetensors');
    expect(rntn('grad', '--model', modelPath, '--trees', treesPath, '--out', out, '--precision', 'float64').status).toBe(0);
    const file = decodeSafetensors(fs.readFileSync(out), out);
    expect(file.tensors.get('V')!.dtype).toBe('F64');
  });

  it('names the file, line and column of a malformed tree and exits 1', () => {
    const bad = path.join(tmp, 'bad.txt');
    fs.writeFileSync(bad, '(3 (2 good) (1 bad))\n(3 (2 good) (7 bad))\n');
    const run = rntn('grad', '--model', modelPath, '--trees', bad, '--out', path.join(tmp, 'x.safetensors'));
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`${bad}:2:14:`);
    expect(fs.existsSync(path.join(tmp, 'x.safetensors'))).toBe(false);
  });

  it('reports a missing model file and exits 1', () => {
    const run = rntn('grad', '--model', path.join(tmp, 'nope.safetensors'), '--trees', treesPath, '--out', path.join(tmp, 'y'));
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/nope\.safetensors/);
  });

  it('rejects a missing required flag and an unknown precision', () => {
    expect(rntn('grad', '--model', modelPath).status).not.toBe(0);
    const run = rntn('grad', '--model', modelPath, '--trees', treesPath, '--out', path.join(tmp, 'z'), '--precision', 'half');
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/--precision must be float32 or float64/);
  });
});

describe('rntn gradcheck', () => {
  it('passes on random models and prints JSON with --json', () => {
    const run = rntn('gradcheck', '--json', '--samples', '50');
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.passed).toBe(true);
    expect(result.runs).toHaveLength(2);
    for (const r of result.runs) expect(r.groups.map((g: { group: string }) => g.group)).toEqual([...TENSOR_NAMES]);
  });

  it('checks a given model on given trees', () => {
    const run = rntn('gradcheck', '--model', modelPath, '--trees', treesPath, '--samples', '30');
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/OpenBLAS kernel/);
    expect(run.stdout).toMatch(/PASSED/);
  });

  it('--help describes every command', () => {
    for (const cmd of ['grad', 'gradcheck']) {
      const run = rntn(cmd, '--help');
      expect(run.status).toBe(0);
      expect(run.stdout).toMatch(/Usage: rntn/);
    }
  });
});
