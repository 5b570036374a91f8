import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
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
    for (const cmd of ['grad', 'gradcheck', 'train', 'eval', 'predict']) {
      const run = rntn(cmd, '--help');
      expect(run.status).toBe(0);
      expect(run.stdout).toMatch(/Usage: rntn/);
    }
  });
});

describe('rntn train, eval and predict', () => {
  const out = path.join(tmp, 'trained.safetensors');
  const log = path.join(tmp, 'train.jsonl');

  it('trains on the generated treebank when no data is given, writing a model and a JSON log', () => {
    const run = spawnSync(process.execPath, [cli, 'train', '--epochs', '3', '--dim', '8', '--out', out, '--log', log], { encoding: 'utf8', cwd: tmp });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toMatch(/generated sentiment treebank/);
    expect(run.stderr).toMatch(/epoch 3: loss/); // plain lines, as stderr is not a terminal here
    expect(run.stderr).not.toMatch(/\r/);
    const records = fs.readFileSync(log, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(records.map((r) => r.epoch)).toEqual([1, 2, 3]);
    for (const r of records) {
      expect(Object.keys(r)).toEqual(expect.arrayContaining(['epoch', 'loss', 'dev', 'sentencesPerSecond', 'seconds', 'wallSeconds']));
      expect(r.wallSeconds).toBeGreaterThan(r.seconds); // it includes the dev evaluations
      expect(r.dev.rootFine).toBeGreaterThanOrEqual(0);
    }
  });

  // util-linux's `script` runs the command on a pseudo-terminal (Debian has it in every install; BSD's takes other flags).
  const script = ['/usr/bin/script', '/bin/script'].find((p) => fs.existsSync(p) && /util-linux/.test(spawnSync(p, ['--version'], { encoding: 'utf8' }).stdout ?? ''));
  it.skipIf(script === undefined)('draws a progress bar with epoch, sent/s, loss and ETA when stderr is a terminal (needs util-linux script)', () => {
    const file = path.join(tmp, 'tty.safetensors');
    const command = `${JSON.stringify(process.execPath)} ${JSON.stringify(cli)} train --epochs 3 --dim 4 --threads 1 --max-minutes 5 --out ${JSON.stringify(file)}`;
    const run = spawnSync(script!, ['-qec', command, '/dev/null'], { encoding: 'utf8' });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    // The bar redraws in place (the cursor sent back to column 1; a terminal turns every newline into \r\n
    // anyway), then each epoch's line scrolls above it.
    expect(run.stdout).toMatch(/epoch 1\/3 \[[=-]+\] \d+% \| \d+ sent\/s \| loss \d\.\d{4} \| ETA \S+ \| budget left \d+m\d\ds/);
    expect(run.stdout).toMatch(/\x1b\[1G/);
    expect(run.stdout).toMatch(/epoch 3: loss/);
  });

  it('writes byte-identical model files with 1, 2 and 3 threads', () => {
    // The pool's test compares encoded models in memory; this is the whole command, file against file.
    const files = ['1', '2', '3'].map((threads) => {
      const file = path.join(tmp, `threads-${threads}.safetensors`);
      const r = rntn('train', '--epochs', '3', '--dim', '8', '--seed', '5', '--threads', threads, '--out', file);
      expect(r.status, r.stderr).toBe(0);
      return fs.readFileSync(file);
    });
    expect(files[1].equals(files[0])).toBe(true);
    expect(files[2].equals(files[0])).toBe(true);
  });

  it('train says so when --threads exceeds --shards, which caps the worker threads', () => {
    const run = (threads: string) => {
      const file = path.join(tmp, `capped-${threads}.safetensors`);
      const r = rntn('train', '--train', treesPath, '--epochs', '1', '--dim', '4', '--threads', threads, '--shards', '2', '--out', file);
      expect(r.status, r.stderr).toBe(0);
      return r.stderr;
    };
    expect(run('3')).toMatch(/note: training on 2 worker threads, not 3: a minibatch's 2 shards/);
    expect(run('2')).not.toMatch(/note:/);
  });

  it('train --teacher distils from models: recorded in the model file, weight 0 is plain training', () => {
    const run = (name: string, ...extra: string[]) => {
      const file = path.join(tmp, name);
      const r = rntn('train', '--train', treesPath, '--epochs', '2', '--dim', '4', '--threads', '1', '--out', file, '--log', `${file}.jsonl`, ...extra);
      expect(r.status, r.stderr).toBe(0);
      return JSON.parse(fs.readFileSync(`${file}.jsonl`, 'utf8').trim().split('\n')[0]).loss as number;
    };
    expect(run('student.safetensors', '--teacher', out, '--teacher', out, '--distill-weight', '1')).not.toBe(run('plain.safetensors'));
    const student = path.join(tmp, 'student.safetensors');
    expect(JSON.parse(decodeSafetensors(fs.readFileSync(student), student).metadata.training).distill).toEqual({ weight: 1, teachers: [out, out] });
    expect(run('weight0.safetensors', '--teacher', out, '--distill-weight', '0')).toBe(run('plain.safetensors'));
  });

  it('eval --json prints the four accuracies and the loss as fractions', () => {
    const run = rntn('eval', '--model', out, '--trees', treesPath, '--json');
    // treesPath holds words the generated vocabulary lacks: they map to *UNK*.
    expect(run.status, run.stderr).toBe(0);
    const m = JSON.parse(run.stdout);
    for (const key of ['loss', 'rootFine', 'allFine', 'rootBinary', 'allBinary']) expect(typeof m[key]).toBe('number');
    for (const key of ['rootFine', 'allFine', 'rootBinary', 'allBinary']) {
      expect(m[key]).toBeGreaterThanOrEqual(0);
      expect(m[key]).toBeLessThanOrEqual(1);
    }
    expect(m.roots).toBe(trees.length);
  });

  it('eval with --model twice scores the ensemble; a missing model file fails it', () => {
    const single = JSON.parse(rntn('eval', '--model', out, '--trees', treesPath, '--json').stdout);
    const run = rntn('eval', '--model', out, '--model', out, '--trees', treesPath, '--json');
    expect(run.status, run.stderr).toBe(0);
    const m = JSON.parse(run.stdout);
    // The same model twice: the same predictions.
    for (const key of ['rootFine', 'allFine', 'rootBinary', 'allBinary']) expect(m[key]).toBe(single[key]);
    const report = rntn('eval', '--model', out, '--model', out, '--trees', treesPath);
    expect(report.stdout).toMatch(/ensemble of 2 models/);
    const missing = rntn('eval', '--model', out, '--model', path.join(tmp, 'absent.safetensors'), '--trees', treesPath);
    expect(missing.status).not.toBe(0);
    expect(missing.stderr).toMatch(/absent\.safetensors/);
  });

  it('predict with --model twice gives the same predictions as the model alone', () => {
    const one = rntn('predict', '--model', out, '--trees', treesPath, '--format', 'json');
    const two = rntn('predict', '--model', out, '--model', out, '--trees', treesPath, '--format', 'json');
    expect(two.status, two.stderr).toBe(0);
    const labels = (stdout: string) => stdout.trim().split('\n').map((line) => JSON.stringify(JSON.parse(line), (k, v) => (k === 'probs' ? undefined : v)));
    expect(labels(two.stdout)).toEqual(labels(one.stdout));
  });

  it('eval without --json prints a readable report', () => {
    const run = rntn('eval', '--model', out, '--trees', treesPath);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/%/);
  });

  it('predict writes PTB with predicted labels, and JSON per tree', () => {
    const ptb = rntn('predict', '--model', out, '--trees', treesPath);
    expect(ptb.status, ptb.stderr).toBe(0);
    const lines = ptb.stdout.trim().split('\n');
    expect(lines).toHaveLength(trees.length);
    expect(lines[0]).toMatch(/^\([0-4] /);
    const json = rntn('predict', '--model', out, '--trees', treesPath, '--format', 'json');
    const first = JSON.parse(json.stdout.trim().split('\n')[0]);
    expect(first.nodes[0].label).toBe(first.label);
    expect(first.probs.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 4);
    expect(first.nodes[0].gold).toBe(trees[0].label);
  });

  it('predict --text binarises plain sentences', () => {
    const text = path.join(tmp, 'plain.txt');
    fs.writeFileSync(text, 'the movie is not good\n\nthe acting is superb\n');
    const run = rntn('predict', '--model', out, '--text', text);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim().split('\n')).toEqual([
      expect.stringMatching(/^\(\d \(\d the\) \(\d \(\d movie\) \(\d \(\d is\) \(\d \(\d not\) \(\d good\)\)\)\)\)$/),
      expect.stringMatching(/^\(\d \(\d the\) /),
    ]);
    // Parentheses in plain text come out as SST's -LRB- and -RRB-, so the PTB output parses back.
    fs.writeFileSync(text, 'a good ( great ) movie\n');
    const parens = rntn('predict', '--model', out, '--text', text);
    expect(parens.stdout).toMatch(/^\(\d \(\d a\) \(\d \(\d good\) \(\d \(\d -LRB-\) \(\d \(\d great\) \(\d \(\d -RRB-\) \(\d movie\)\)\)\)\)\)\n$/);
    const ptb = path.join(tmp, 'parens.ptb');
    fs.writeFileSync(ptb, parens.stdout);
    expect(rntn('eval', '--model', out, '--trees', ptb).status).toBe(0);
  });

  it('ends quietly, with status 0, when its reader closes the pipe early (rntn predict … | head)', async () => {
    const many = path.join(tmp, 'many.txt');
    fs.writeFileSync(many, randomTrees(11, 3000, ['*UNK*', 'good', 'bad', 'not'], 5, 12).map((t) => formatTree(t)).join('\n') + '\n');
    const child = spawn(process.execPath, [cli, 'predict', '--model', out, '--trees', many, '--format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.stdout.once('data', () => child.stdout.destroy()); // the reader goes away after its first chunk
    const code = await new Promise((resolve) => child.on('close', resolve));
    expect(stderr).not.toMatch(/EPIPE|\n\s+at /);
    expect(code).toBe(0);
  });

  it('a resumed run keeps its checkpoint\'s settings and data, whatever the flags say', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'train', '--threads', '1', ...args], { encoding: 'utf8', cwd: tmp });
    const whole = path.join(tmp, 'whole.safetensors');
    expect(run('--epochs', '3', '--dim', '5', '--seed', '5', '--out', whole).status).toBe(0);
    const ckpt = path.join(tmp, 'resume-ckpt');
    expect(run('--epochs', '2', '--dim', '5', '--seed', '5', '--checkpoint-dir', ckpt, '--out', path.join(tmp, 'part.safetensors')).status).toBe(0);
    const resumed = path.join(tmp, 'resumed.safetensors');
    // Different --dim and --seed: the checkpoint's win, including the generated treebank's seed.
    const r = run('--epochs', '3', '--dim', '25', '--seed', '9', '--threads', '2', '--resume', path.join(ckpt, 'checkpoint.safetensors'), '--out', resumed);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readFileSync(resumed).equals(fs.readFileSync(whole))).toBe(true);
    const training = JSON.parse(decodeSafetensors(fs.readFileSync(resumed), resumed).metadata.training);
    expect([training.dim, training.seed, training.epochsRun]).toEqual([5, 5, 3]);
  });

  it('--resume names the flags that differ from the run it continues (they are ignored), not the ones repeated', () => {
    const dir = path.join(tmp, 'resume-note');
    fs.mkdirSync(dir);
    const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'train', '--dim', '4', '--threads', '1', ...args], { encoding: 'utf8', cwd: dir });
    expect(run('--epochs', '1', '--lr', '0.02', '--checkpoint-dir', 'ck').status).toBe(0);
    const same = run('--epochs', '2', '--lr', '0.02', '--resume', 'ck/checkpoint.safetensors');
    expect(same.status, same.stderr).toBe(0);
    expect(same.stderr).not.toMatch(/note:/);
    const other = run('--epochs', '3', '--lr', '0.5', '--lambda-v', '1', '--resume', 'ck/checkpoint.safetensors');
    expect(other.status, other.stderr).toBe(0);
    expect(other.stderr).toMatch(/note: a resumed run keeps the settings it started with; ignoring --lr 0.5 \(the run's: 0.02\), --lambda-v 1 \(the run's: 0.3\)\n/);
    // With the drop turned off, its factor is no setting of this command line: only the epoch is news.
    const noDrop = run('--epochs', '3', '--lr-drop-epoch', '0', '--lr-drop-factor', '0.1', '--resume', 'ck/checkpoint.safetensors');
    expect(noDrop.stderr).toMatch(/ignoring --lr-drop-epoch 0 \(the run's: 16\)\n/);
  });

  it('a run stopped by --max-minutes without --checkpoint-dir leaves a checkpoint beside the model to resume from', () => {
    const dir = path.join(tmp, 'budget');
    fs.mkdirSync(dir);
    const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'train', '--dim', '4', '--threads', '1', '--epochs', '200', ...args], { encoding: 'utf8', cwd: dir });
    const stopped = run('--max-minutes', '0.003');
    expect(stopped.status, stopped.stderr).toBe(0);
    const done = /stopped at the time budget after (\d+) epochs; model written to model\.safetensors.*; to continue: --resume model\.safetensors\.checkpoint\/checkpoint\.safetensors with a larger --max-minutes\n/.exec(stopped.stderr);
    expect(done, stopped.stderr).not.toBeNull();
    const checkpoint = 'model.safetensors.checkpoint/checkpoint.safetensors';
    // The checkpoint knows its treebank (the generated one): other trees are refused.
    const other = run('--train', treesPath, '--resume', checkpoint);
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/its run trains on other trees/);
    const target = String(Number(done![1]) + 2);
    const resumed = run('--epochs', target, '--resume', checkpoint);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain(`finished after ${target} epochs`);
  });

  it('refuses --patience and --eval-every without a dev set, which they count evaluations of', () => {
    for (const flag of [['--patience', '2'], ['--eval-every', '2']]) {
      const r = rntn('train', '--train', treesPath, '--epochs', '1', '--dim', '4', ...flag, '--out', path.join(tmp, 'nodev.safetensors'));
      expect(r.status).toBe(1);
      expect(r.stderr).toContain(`${flag[0]} counts dev evaluations: it needs --dev`);
    }
  });

  it('gives a message and a non-zero exit for missing files, bad flags and malformed trees', () => {
    const missing = rntn('train', '--train', path.join(tmp, 'absent.txt'), '--out', path.join(tmp, 'm2'));
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/absent\.txt/);
    // predict --text read its file apart from the other commands and printed Node's raw ENOENT.
    const missingText = rntn('predict', '--model', modelPath, '--text', path.join(tmp, 'absent.txt'));
    expect(missingText.status).toBe(1);
    expect(missingText.stderr).toMatch(/cannot read text from .*absent\.txt: no such file/);
    const badFlag = rntn('train', '--dim', 'zero');
    expect(badFlag.status).not.toBe(0);
    expect(badFlag.stderr).toMatch(/--dim.*positive integer/);
    const dropout = rntn('train', '--dropout', '1');
    expect(dropout.status).not.toBe(0);
    expect(dropout.stderr).toMatch(/--dropout.*rate in \[0, 1\)/);
    const rootWeight = rntn('train', '--root-weight', '-2');
    expect(rootWeight.status).not.toBe(0);
    expect(rootWeight.stderr).toMatch(/--root-weight.*non-negative number/);
    const polarityWeight = rntn('train', '--polarity-weight', 'x');
    expect(polarityWeight.status).not.toBe(0);
    expect(polarityWeight.stderr).toMatch(/--polarity-weight.*non-negative number/);
    const rootPolarityWeight = rntn('train', '--root-polarity-weight', '-1');
    expect(rootPolarityWeight.status).not.toBe(0);
    expect(rootPolarityWeight.stderr).toMatch(/--root-polarity-weight.*non-negative number/);
    // Number('') is 0: an empty value (an unset shell variable) must not pass as 0.
    for (const flag of ['--root-polarity-weight', '--lr-drop-epoch', '--dropout', '--distill-weight', '--dim', '--lr']) {
      const blank = rntn('train', flag, ' ', '--epochs', '1', '--out', path.join(tmp, 'blank'));
      expect(blank.status, flag).not.toBe(0);
      expect(blank.stderr, flag).toMatch(new RegExp(`${flag}.*empty value`));
    }
    expect(fs.existsSync(path.join(tmp, 'blank'))).toBe(false);
    // An empty path is a file that cannot be read or written, never "flag absent": --train '' used to train on the generated treebank.
    for (const flags of [['--train', ''], ['--train', treesPath, '--dev', ''], ['--train', treesPath, '--log', ''], ['--train', treesPath, '--resume', ''], ['--train', treesPath, '--checkpoint-dir', '']]) {
      const run = rntn('train', '--epochs', '1', '--out', path.join(tmp, 'm7'), ...flags);
      expect(run.status, flags.join(' ')).toBe(1);
      expect(run.stderr, flags.join(' ')).toMatch(/cannot read trees from : no such file|the file name is empty|cannot read checkpoint from : no such file|checkpointDir must be a directory path/);
    }
    expect(fs.existsSync(path.join(tmp, 'm7'))).toBe(false);
    const blankTrees = rntn('gradcheck', '--model', modelPath, '--trees', '');
    expect(blankTrees.status).toBe(1);
    expect(blankTrees.stderr).toContain('cannot read trees from : no such file');
    // A named file with no trees is refused, not read as "no dev set" or scored as 0 of 0.
    const empty = path.join(tmp, 'empty.txt');
    fs.writeFileSync(empty, '\n\n');
    const emptyDev = rntn('train', '--train', treesPath, '--dev', empty, '--epochs', '1', '--out', path.join(tmp, 'm4'));
    expect(emptyDev.status).toBe(1);
    expect(emptyDev.stderr).toContain(`${empty}: no trees`);
    expect(fs.existsSync(path.join(tmp, 'm4'))).toBe(false);
    const emptyEval = rntn('eval', '--model', out, '--trees', empty);
    expect(emptyEval.status).toBe(1);
    expect(emptyEval.stderr).toContain(`${empty}: no trees`);
    const emptyPredict = rntn('predict', '--model', out, '--trees', empty);
    expect(emptyPredict.status).toBe(0);
    expect(emptyPredict.stdout).toBe('');
    // Outputs are checked before the first epoch: a long run must not end in a failed write.
    const nowhere = path.join(tmp, 'no-such-dir', 'm');
    const stopDir = path.join(tmp, 'm5.checkpoint');
    fs.writeFileSync(stopDir, 'not a directory');
    const unwritable: [string[], string][] = [
      [['--out', nowhere], `cannot write the model to ${nowhere}: no directory`],
      [['--out', tmp], `cannot write the model to ${tmp}: it is a directory`],
      [['--out', path.join(tmp, 'm5'), '--log', nowhere], `cannot write the training log to ${nowhere}: no directory`],
      [['--out', path.join(tmp, 'm5'), '--checkpoint-dir', treesPath], `cannot write checkpoints to ${path.join(treesPath, 'checkpoint.safetensors')}: ${treesPath} is not a directory`],
      // Where a run cut short would keep its checkpoint (OUT.checkpoint/): a file standing there is found now, not at Ctrl-C.
      [['--out', path.join(tmp, 'm5')], `cannot write checkpoints to ${path.join(stopDir, 'checkpoint.safetensors')}: ${stopDir} is not a directory`],
    ];
    for (const [flags, message] of unwritable) {
      const run = rntn('train', '--train', treesPath, '--epochs', '1', ...flags);
      expect(run.status, flags.join(' ')).toBe(1);
      expect(run.stderr).toContain(message);
      expect(run.stderr).not.toMatch(/epoch 1/);
    }
    expect(fs.existsSync(path.join(tmp, 'm5'))).toBe(false);
    // An output that is one of the inputs (here through a symbolic link) is refused before anything is written.
    const copy = path.join(tmp, 'copy.txt');
    fs.copyFileSync(treesPath, copy);
    fs.symlinkSync(copy, path.join(tmp, 'link.txt'));
    for (const flags of [['--out', copy], ['--out', path.join(tmp, 'm6'), '--log', copy]]) {
      const run = rntn('train', '--train', path.join(tmp, 'link.txt'), '--epochs', '1', ...flags);
      expect(run.status, flags.join(' ')).toBe(1);
      expect(run.stderr).toContain(`${flags[flags.length - 2]} ${copy} is also --train: writing it would destroy an input`);
    }
    expect(fs.readFileSync(copy).equals(fs.readFileSync(treesPath))).toBe(true);
    const gradOverModel = rntn('grad', '--model', modelPath, '--trees', treesPath, '--out', modelPath);
    expect(gradOverModel.status).toBe(1);
    expect(gradOverModel.stderr).toContain(`--out ${modelPath} is also --model`);
    const distillWeight = rntn('train', '--distill-weight', '1.5');
    expect(distillWeight.status).not.toBe(0);
    expect(distillWeight.stderr).toMatch(/--distill-weight.*number in \[0, 1\]/);
    const teacher = rntn('train', '--teacher', path.join(tmp, 'absent.safetensors'), '--epochs', '1', '--out', path.join(tmp, 'm3'));
    expect(teacher.status).toBe(1);
    expect(teacher.stderr).toMatch(/absent\.safetensors/);
    const unknown = rntn('train', '--frobnicate');
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toMatch(/unknown option/);
    const leaf = rntn('train', '--leaf', 'relu');
    expect(leaf.status).not.toBe(0);
    expect(leaf.stderr).toMatch(/identity, tanh/);
    const bad = path.join(tmp, 'malformed.txt');
    fs.writeFileSync(bad, '(3 (2 good) (1 bad)\n');
    const malformed = rntn('eval', '--model', out, '--trees', bad);
    expect(malformed.status).toBe(1);
    expect(malformed.stderr).toContain(`${bad}:1:20:`);
    expect(rntn('predict', '--model', out).status).toBe(1);
    expect(rntn('nosuchcommand').status).not.toBe(0);
  });
});
