/**
 * Crash safety of `rntn train`, end to end: the real command in a child
 * process, killed with SIGKILL (no handler runs, nothing is flushed), then
 * resumed from its last checkpoint, must end with the same model file bytes
 * as an uninterrupted run; and a checkpoint on disk is never half-written.
 * Stopped with SIGINT (Ctrl-C) instead, it must leave a checkpoint (one of
 * its own when started without --checkpoint-dir) that resumes to the same
 * bytes too.
 *
 * Kill times are drawn from a seeded generator as fractions of the training
 * time of an uninterrupted run measured in this same test process, and
 * counted from the moment the child starts training (the line it prints just
 * before), so the draws are reproducible and the kills land mid-training
 * however fast or loaded the machine is. Where exactly a kill lands still
 * depends on timing; every outcome (before the first checkpoint,
 * mid-training, after the run finished) is a correct state to recover from
 * and is handled.
 *
 * Every run trains with the same flags and relative paths, each in a
 * directory of its own, so the `training` metadata that the model file
 * records (the command's options) is the same for all of them and the whole
 * file can be compared byte for byte.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Random } from '../src/random';
import { decodeSafetensors } from '../src/safetensors';

const cli = path.resolve(__dirname, '../lib/cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-interrupt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const EPOCHS = 8;
const CKPT_DIR = 'ckpt';
const CKPT = path.join(CKPT_DIR, 'checkpoint.safetensors');
const OUT = 'model.safetensors';
const FLAGS = ['train', '--dim', '8', '--epochs', String(EPOCHS), '--threads', '1', '--seed', '3',
  '--checkpoint-dir', CKPT_DIR, '--checkpoint-every', '1', '--out', OUT];
/** The same run, started without asking for checkpoints. */
const FLAGS_WITHOUT_DIR = FLAGS.filter((f, i) => f !== '--checkpoint-dir' && FLAGS[i - 1] !== '--checkpoint-dir');
/** The name writeFileAtomic gives its temp files: hidden, and not ending in .safetensors. */
const TEMP = /^\.checkpoint\.safetensors\.\d+\.[0-9a-f]+\.tmp$/;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  /** The epochs this process completed (its "epoch N:" lines). */
  epochs: number[];
  /** When each of those lines arrived, in ms after training started. */
  epochAt: number[];
  /** When the "finished" line arrived, in ms after training started. */
  finishedAt?: number;
}

const live = new Set<ChildProcess>();
afterEach(() => {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
});

/** Printed just before train() is called: where training time starts, so that start-up times do not move the kill. */
const TRAINING_STARTS = /^OpenBLAS kernel/;

/**
 * `rntn train FLAGS [extra]` (or `flags` instead of FLAGS) in `cwd`;
 * SIGKILLed `killAfter` ms after training starts if it is still running
 * then, or sent SIGINT when it prints epoch `interruptAtEpoch`.
 */
function train(
  cwd: string,
  extra: string[] = [],
  options: { killAfter?: number; interruptAtEpoch?: number; env?: NodeJS.ProcessEnv; nodeArgs?: string[]; flags?: string[] } = {},
): Promise<Run> {
  fs.mkdirSync(cwd, { recursive: true });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), cli, ...(options.flags ?? FLAGS), ...extra], {
      cwd,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    live.add(child);
    let stderr = '';
    let pending = '';
    let trainingStarted: number | undefined;
    let timer: NodeJS.Timeout | undefined;
    const run: Omit<Run, 'code' | 'signal' | 'stderr'> = { epochs: [], epochAt: [] };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      stderr += chunk;
      const lines = (pending + chunk).split('\n');
      pending = lines.pop()!;
      const now = performance.now();
      for (const line of lines) {
        if (trainingStarted === undefined && TRAINING_STARTS.test(line)) {
          trainingStarted = now;
          if (options.killAfter !== undefined) timer = setTimeout(() => child.kill('SIGKILL'), options.killAfter);
        }
        const epoch = /^epoch (\d+):/.exec(line);
        if (epoch && trainingStarted !== undefined) {
          run.epochs.push(Number(epoch[1]));
          run.epochAt.push(now - trainingStarted);
          if (Number(epoch[1]) === options.interruptAtEpoch) child.kill('SIGINT'); // Ctrl-C
        }
        if (/^finished after/.test(line) && trainingStarted !== undefined) run.finishedAt = now - trainingStarted;
      }
    });
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stderr, ...run });
    });
  });
}

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

/**
 * What a checkpoint must be whenever one is on disk: a complete rntn
 * checkpoint (the checks of readCheckpoint in src/train.ts). Returns the
 * epochs it has completed.
 */
function checkCheckpoint(file: string, paramCount: number): number {
  const { tensors, metadata } = decodeSafetensors(fs.readFileSync(file), file);
  expect(metadata.format).toBe('rntn-checkpoint/1');
  for (const key of ['vocab', 'config', 'options', 'state']) expect(() => JSON.parse(metadata[key]), key).not.toThrow();
  const state = JSON.parse(metadata.state) as { epoch: number; batch: number };
  expect(JSON.parse(metadata.config)).toMatchObject({ dim: 8 });
  // Every checkpoint here follows at least one epoch with a dev evaluation (asserted below), so it holds the best model too.
  expect(Object.keys(Object.fromEntries(tensors)).sort()).toEqual(['best', 'history', 'params']);
  for (const [name, t] of tensors) {
    expect(t.data, name).toBeInstanceOf(Float32Array);
    expect(t.data.length, name).toBe(paramCount);
    expect(t.data.every(Number.isFinite), name).toBe(true);
  }
  // SIGKILL runs no handler: only epoch-end checkpoints exist.
  expect(state.batch).toBe(0);
  expect(state.epoch).toBeGreaterThanOrEqual(1);
  expect(state.epoch).toBeLessThanOrEqual(EPOCHS);
  return state.epoch;
}

/** The checkpoint directory after a crash: at most the checkpoint and stale temp files, none of which looks like a checkpoint. */
function checkCheckpointDir(cwd: string, paramCount: number): { epoch: number; temps: string[] } {
  const dir = path.join(cwd, CKPT_DIR);
  const entries = fs.existsSync(dir) ? fs.readdirSync(dir) : [];
  const temps = entries.filter((e) => TEMP.test(e));
  expect(entries.filter((e) => !TEMP.test(e)), `unexpected files in ${dir}`).toEqual(entries.includes('checkpoint.safetensors') ? ['checkpoint.safetensors'] : []);
  const file = path.join(cwd, CKPT);
  return { epoch: fs.existsSync(file) ? checkCheckpoint(file, paramCount) : 0, temps };
}

let reference: Buffer;
let paramCount: number;
/** Milliseconds after training starts, in the uninterrupted run: epoch 1 is done (its checkpoint follows at once), the run has finished. */
let window: { first: number; end: number };

beforeAll(async () => {
  const run = await train(path.join(tmp, 'reference'));
  expect(run.code, run.stderr).toBe(0);
  expect(run.epochs).toEqual(range(1, EPOCHS));
  reference = fs.readFileSync(path.join(tmp, 'reference', OUT));
  const decoded = decodeSafetensors(reference, OUT);
  paramCount = [...decoded.tensors.values()].reduce((n, t) => n + t.data.length, 0);
  expect(JSON.parse(decoded.metadata.training)).toMatchObject({ dim: 8, epochs: EPOCHS, seed: 3, epochsRun: EPOCHS, stoppedBy: 'epochs' });
  window = { first: run.epochAt[0], end: run.finishedAt! };
});

/**
 * Recovers as a user would after a crash: resume from the checkpoint when
 * there is one (it must then only run the remaining epochs), start over when
 * there is none. Returns the recovering run.
 */
async function recover(cwd: string, fromEpoch: number): Promise<Run> {
  const run = await train(cwd, fromEpoch > 0 ? ['--resume', CKPT] : []);
  expect(run.code, run.stderr).toBe(0);
  expect(run.epochs, 'the epochs the recovering run trained').toEqual(range(fromEpoch + 1, EPOCHS));
  return run;
}

describe('rntn train killed with SIGKILL', () => {
  it('resumes from the last checkpoint (or starts over when there is none) to the same model bytes', async ({ annotate }) => {
    const rng = new Random(20240601);
    const outcomes: string[] = [];
    for (let trial = 0; trial < 2; trial++) {
      const cwd = path.join(tmp, `kill-${trial}`);
      const killAfter = rng.next() * window.end;
      const killed = await train(cwd, [], { killAfter });
      if (killed.signal !== 'SIGKILL') {
        // The run finished before the kill: an uninterrupted run, which must match too.
        expect(killed.code, killed.stderr).toBe(0);
        outcomes.push(`${killAfter.toFixed(0)} ms into training: finished first`);
      } else {
        const { epoch } = checkCheckpointDir(cwd, paramCount);
        outcomes.push(`${killAfter.toFixed(0)} ms into training: killed ${epoch > 0 ? `after epoch ${epoch}` : 'before the first checkpoint'}`);
        await recover(cwd, epoch);
      }
      expect(fs.readFileSync(path.join(cwd, OUT)).equals(reference), outcomes.join('; ')).toBe(true);
    }
    await annotate(outcomes.join('; '));
  });

  it('killed again and again, it never leaves a broken checkpoint, never loses progress, and still ends with the same bytes', async ({ annotate }) => {
    const rng = new Random(3);
    const cwd = path.join(tmp, 'repeated');
    // Each life is killed between half an epoch before its first checkpoint
    // and two epochs after it: mostly with progress, sometimes without, and
    // many times before the run is through. The epoch times are re-measured
    // on every life, as the machine's load changes.
    let first = window.first;
    let epochTime = (window.end - window.first) / (EPOCHS - 1);
    let epoch = 0;
    let kills = 0;
    let killedMidTraining = 0;
    let finished = false;
    const lives: string[] = [];
    for (let life = 0; life < 6 && !finished; life++) {
      const killAfter = first + (rng.next() * 2.5 - 0.5) * epochTime;
      const run = await train(cwd, epoch > 0 ? ['--resume', CKPT] : [], { killAfter });
      if (run.signal !== 'SIGKILL') {
        lives.push(`${killAfter.toFixed(0)} ms into training: finished first`);
        expect(run.code, run.stderr).toBe(0);
        expect(run.epochs).toEqual(range(epoch + 1, EPOCHS));
        finished = true;
        break;
      }
      kills++;
      const after = checkCheckpointDir(cwd, paramCount);
      expect(after.epoch, 'a kill never takes a checkpoint back').toBeGreaterThanOrEqual(epoch);
      // A checkpoint is written after each epoch line is printed: the one on disk is the last line's, or the one before it if the kill landed in the write.
      const printed = run.epochs.length > 0 ? run.epochs[run.epochs.length - 1] : epoch;
      expect([printed, printed - 1]).toContain(after.epoch);
      if (after.epoch > 0 && after.epoch < EPOCHS) killedMidTraining++;
      lives.push(`${killAfter.toFixed(0)} ms into training: killed, checkpoint at epoch ${after.epoch}${after.temps.length > 0 ? `, ${after.temps.length} stale temp file(s)` : ''}`);
      epoch = after.epoch;
      if (run.epochAt.length > 0) first = run.epochAt[0];
      else first = Math.max(first, killAfter); // epoch 1 took at least this long
      if (run.epochAt.length > 1) epochTime = (run.epochAt[run.epochAt.length - 1] - run.epochAt[0]) / (run.epochAt.length - 1);
      // A model file, if the kill came late enough for one, is complete too.
      if (fs.existsSync(path.join(cwd, OUT))) decodeSafetensors(fs.readFileSync(path.join(cwd, OUT)), OUT);
    }
    if (!finished) await recover(cwd, epoch);
    await annotate(lives.join('; '));
    expect(kills).toBeGreaterThanOrEqual(3);
    expect(killedMidTraining, 'kills that left a checkpoint to resume from').toBeGreaterThanOrEqual(1);
    expect(fs.readFileSync(path.join(cwd, OUT)).equals(reference)).toBe(true);
  });

  // Random kills land inside the write itself only now and then (it takes
  // about a millisecond, mostly the fsync), so these two put the kill exactly
  // there: a preloaded script SIGKILLs the process from inside its third
  // checkpoint write.
  const hook = path.join(tmp, 'kill-in-checkpoint-write.js');
  fs.writeFileSync(
    hook,
    `'use strict';
// RNTN_KILL_IN_CHECKPOINT_WRITE=<where>:<n> SIGKILLs this process during its
// n-th checkpoint write: where=write halfway through writing the temp file,
// where=rename after the temp file is complete and synced, before the rename.
const fs = require('node:fs');
const [where, nth] = process.env.RNTN_KILL_IN_CHECKPOINT_WRITE.split(':');
const temp = ${TEMP.toString().replace('^', '(^|\\/)')};
let writes = 0;
let armed;
const openSync = fs.openSync;
fs.openSync = function (file, ...rest) {
  const fd = openSync.call(this, file, ...rest);
  if (temp.test(String(file)) && ++writes === Number(nth)) armed = fd;
  return fd;
};
const writeSync = fs.writeSync;
fs.writeSync = function (fd, data, offset, length, ...rest) {
  if (where === 'write' && fd === armed && length > 1) {
    writeSync.call(this, fd, data, offset, Math.floor(length / 2));
    process.kill(process.pid, 'SIGKILL');
  }
  return writeSync.call(this, fd, data, offset, length, ...rest);
};
const renameSync = fs.renameSync;
fs.renameSync = function (from, to) {
  if (where === 'rename' && armed !== undefined && temp.test(String(from))) process.kill(process.pid, 'SIGKILL');
  return renameSync.call(this, from, to);
};
`,
  );

  for (const where of ['write', 'rename'] as const) {
    it(`a kill ${where === 'write' ? 'halfway through writing' : 'just before renaming'} a checkpoint leaves the previous one intact, and resuming from it ends with the same bytes`, async () => {
      const cwd = path.join(tmp, `in-${where}`);
      const killed = await train(cwd, [], { nodeArgs: ['--require', hook], env: { RNTN_KILL_IN_CHECKPOINT_WRITE: `${where}:3` } });
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      // The third checkpoint (after epoch 3) was being written; the second is what is on disk.
      expect(killed.epochs).toEqual([1, 2, 3]);
      const after = checkCheckpointDir(cwd, paramCount);
      expect(after.epoch).toBe(2);
      // The interrupted write is the stale temp file: cut short, or complete but never renamed.
      expect(after.temps).toHaveLength(1);
      const tempSize = fs.statSync(path.join(cwd, CKPT_DIR, after.temps[0])).size;
      const ckptSize = fs.statSync(path.join(cwd, CKPT)).size;
      if (where === 'write') expect(tempSize).toBeLessThan(ckptSize);
      else expect(checkCheckpoint(path.join(cwd, CKPT_DIR, after.temps[0]), paramCount)).toBe(3);
      await recover(cwd, 2);
      expect(fs.readFileSync(path.join(cwd, OUT)).equals(reference)).toBe(true);
    });
  }
});

describe('rntn train stopped with Ctrl-C (SIGINT)', () => {
  // Forty epochs, not eight: the signal goes when the parent reads the "epoch 1" line, and a loaded
  // machine must not let the run finish first (eight epochs take well under a second).
  const LONG = 40;
  const long = (flags: string[]) => flags.map((f, i) => (flags[i - 1] === '--epochs' ? String(LONG) : f));
  let longReference: Buffer;
  beforeAll(async () => {
    const run = await train(path.join(tmp, 'sigint-reference'), [], { flags: long(FLAGS_WITHOUT_DIR) });
    expect(run.code, run.stderr).toBe(0);
    longReference = fs.readFileSync(path.join(tmp, 'sigint-reference', OUT));
  });

  it('stops after the batches in flight with status 130, leaving a checkpoint and the model so far; resuming ends with the same bytes', async () => {
    const cwd = path.join(tmp, 'sigint');
    const stopped = await train(cwd, [], { interruptAtEpoch: 1, flags: long(FLAGS) });
    expect(stopped.signal, stopped.stderr).toBeNull();
    expect(stopped.code, stopped.stderr).toBe(130);
    expect(stopped.stderr).toMatch(/interrupted: stopping after the batches in flight and writing a checkpoint/);
    expect(stopped.stderr).toMatch(/interrupted after \d+ epochs; model written to model\.safetensors.*; to continue: --resume ckpt\/checkpoint\.safetensors\n/);
    expect(stopped.epochs.length, 'the run stopped long before its last epoch').toBeLessThan(LONG);
    // The model so far is a complete model file; the checkpoint holds where the run stopped, mid-epoch or not.
    decodeSafetensors(fs.readFileSync(path.join(cwd, OUT)), OUT);
    const state = JSON.parse(decodeSafetensors(fs.readFileSync(path.join(cwd, CKPT)), CKPT).metadata.state) as { epoch: number; batch: number };
    expect(state.epoch >= 2 || (state.epoch === 1 && state.batch > 0), `the checkpoint is from after epoch 1: ${JSON.stringify(state)}`).toBe(true);
    const resumed = await train(cwd, ['--resume', CKPT], { flags: long(FLAGS) });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.epochs).toEqual(range(state.epoch + 1, LONG));
    expect(fs.readFileSync(path.join(cwd, OUT)).equals(longReference)).toBe(true);
  });

  it('started without --checkpoint-dir, it leaves its checkpoint beside the model and says how to resume', async () => {
    const cwd = path.join(tmp, 'sigint-no-dir');
    const stopped = await train(cwd, [], { interruptAtEpoch: 1, flags: long(FLAGS_WITHOUT_DIR) });
    expect(stopped.code, stopped.stderr).toBe(130);
    const checkpoint = path.join(`${OUT}.checkpoint`, 'checkpoint.safetensors');
    expect(stopped.stderr).toContain(`; to continue: --resume ${checkpoint}\n`);
    const resumed = await train(cwd, ['--resume', checkpoint], { flags: long(FLAGS_WITHOUT_DIR) });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.epochs[resumed.epochs.length - 1]).toBe(LONG);
    expect(fs.readFileSync(path.join(cwd, OUT)).equals(longReference)).toBe(true);
  });

  it('a run that finishes leaves no checkpoint of its own behind', async () => {
    const cwd = path.join(tmp, 'no-dir-finished');
    const run = await train(cwd, [], { flags: FLAGS_WITHOUT_DIR });
    expect(run.code, run.stderr).toBe(0);
    expect(fs.readdirSync(cwd)).toEqual([OUT]);
  });
});
