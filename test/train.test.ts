import { afterAll, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { encodeModel, saveModel } from '../src/model-file';
import { decodeSafetensors, encodeSafetensors } from '../src/safetensors';
import { syntheticSplits } from '../src/synthetic';
import { AdaGrad, CHECKPOINT_FILE, DEFAULT_TRAIN_OPTIONS, NonFiniteError, train, type TrainOptions } from '../src/train';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-train-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const data = syntheticSplits(3);
const trainTrees = data.train.slice(0, 150);
const devTrees = data.dev.slice(0, 40);
// With dropout and weighted roots, so that determinism and resumption cover them too.
const small: TrainOptions = { ...DEFAULT_TRAIN_OPTIONS, dim: 6, batchSize: 10, epochs: 4, seed: 5, dropout: 0.3, rootWeight: 2, polarityWeight: 0.5, rootPolarityWeight: 1.5 };

describe('AdaGrad', () => {
  it('adds λθ to the scaled gradient, divides by √(Σg²) + ε, and zeroes the gradient', () => {
    const opt = new AdaGrad(2, 1e-3);
    const params = Float32Array.from([1, -2]);
    const grad = Float32Array.from([3, 0]);
    const other = Float32Array.from([1, 0]); // a second shard: the step sums them
    expect(opt.step(params, [grad, other], Int32Array.from([0, 1, 1, 2]), Float32Array.from([0.1, 0.1]), 0.5, 0.1)).toBe(true);
    // g = 0.5·(3 + 1) + 0.1·1 = 2.1 → θ = 1 − 0.1·2.1/(2.1 + 1e-3); g = 0 + 0.1·(−2) = −0.2 → θ = −2 + 0.1·0.2/(0.2 + 1e-3)
    expect(params[0]).toBeCloseTo(1 - (0.1 * 2.1) / (2.1 + 1e-3), 6);
    expect(params[1]).toBeCloseTo(-2 + (0.1 * 0.2) / (0.2 + 1e-3), 6);
    expect(opt.history[0]).toBeCloseTo(2.1 * 2.1, 5);
    expect(opt.history[1]).toBeCloseTo(0.04, 7);
    expect(Array.from(grad)).toEqual([0, 0]);
    expect(Array.from(other)).toEqual([0, 0]);
    // Only the given ranges move.
    const untouched = Float32Array.from(params);
    expect(opt.step(params, [Float32Array.from([5, 5])], Int32Array.from([1, 1]), Float32Array.from([0]), 1, 0.1)).toBe(true);
    expect(Array.from(params)).toEqual(Array.from(untouched));
    expect(opt.step(params, [Float32Array.from([NaN, 0])], Int32Array.from([0, 2]), Float32Array.from([0]), 1, 0.1)).toBe(false);
    expect(() => opt.step(params, [grad], Int32Array.from([0, 3]), Float32Array.from([0]), 1, 0.1)).toThrow(/range 0 \[0, 3\) is not inside params/);
    expect(() => opt.step(params, [params], Int32Array.from([0, 1]), Float32Array.from([0]), 1, 0.1)).toThrow(/must not share memory/);
    opt.reset();
    expect(Array.from(opt.history)).toEqual([0, 0]);
  });

  it('sums the shards in shard order, bit for bit, for any shard count', () => {
    const f = Math.fround;
    const n = 37; // not a multiple of a vector width
    for (const shards of [1, 2, 3, 4, 5, 7]) {
      const start = Float32Array.from({ length: n }, (_, i) => Math.sin(i + shards));
      const grads = Array.from({ length: shards }, (_, s) => Float32Array.from({ length: n }, (_, i) => Math.cos(3 * i + s) * 10 ** ((i % 5) - 2)));
      // The reference, in float32 arithmetic: ((g0 + g1) + g2) + …, then the update.
      const expected = Float32Array.from(start, (theta, i) => {
        let sum = grads[0][i];
        for (let s = 1; s < shards; s++) sum = f(sum + grads[s][i]);
        const g = f(f(f(0.25) * sum) + f(f(0.01) * theta));
        const h = f(g * g);
        return f(theta - f(f(f(0.1) * g) / f(f(Math.sqrt(h)) + f(1e-3))));
      });
      const params = Float32Array.from(start);
      const opt = new AdaGrad(n, 1e-3);
      expect(opt.step(params, grads, Int32Array.of(0, n), Float32Array.of(0.01), 0.25, 0.1)).toBe(true);
      expect(Array.from(params), `${shards} shards`).toEqual(Array.from(expected));
      for (const g of grads) expect(g.every((x) => x === 0)).toBe(true);
    }
  });
});

describe('train', () => {
  it('learns the generated treebank: dev accuracy well above the majority class', async () => {
    const result = await train(data.train.slice(0, 600), data.dev, { ...small, dim: 10, epochs: 8 });
    expect(result.stoppedBy).toBe('epochs');
    expect(result.records).toHaveLength(8);
    expect(result.records[7].loss).toBeLessThan(result.records[0].loss);
    // Neutral is ~56 % of nodes; a model that learned nothing stays near that.
    expect(result.bestDev!.allFine).toBeGreaterThan(0.8);
    const best = result.records.filter((r) => r.best).pop()!;
    expect(result.bestDev!.rootFine).toBeCloseTo(best.dev!.rootFine, 10);
  });

  it('is deterministic: the same seed gives the same bytes', async () => {
    const a = await train(trainTrees, devTrees, small);
    const b = await train(trainTrees, devTrees, small);
    expect(encodeModel(a.model).equals(encodeModel(b.model))).toBe(true);
  });

  it('trains and checkpoints trees built in code whatever their words, PTB-writable or not', async () => {
    const odd = [{ label: 3, left: { label: 2, word: '(' }, right: { label: 4, word: 'two words' } }, ...trainTrees.slice(0, 20)];
    const dir = path.join(tmp, 'odd-words');
    const run = await train(odd, undefined, { ...small, minCount: 1, epochs: 1, checkpointDir: dir });
    expect(run.model.vocab.words).toContain('two words');
    await expect(train(odd, undefined, { ...small, epochs: 2 }, {}, path.join(dir, CHECKPOINT_FILE))).resolves.toMatchObject({ epochs: 2 });
  });

  it('refuses options it would misread, each with a message naming it', async () => {
    const bad: [Partial<TrainOptions>, RegExp][] = [
      [{ epochs: -1 }, /epochs must be an integer >= 0, got -1/],
      [{ epochs: 1.5 }, /epochs must be an integer >= 0, got 1.5/],
      [{ learningRate: NaN }, /learningRate must be a finite number > 0, got NaN/],
      [{ learningRate: 0 }, /learningRate must be a finite number > 0, got 0/],
      [{ learningRateDrop: { epoch: 0, factor: 0.1 } }, /learningRateDrop\.epoch must be a positive integer, got 0/],
      [{ learningRateDrop: { epoch: 16, factor: -1 } }, /learningRateDrop\.factor must be a finite number >= 0, got -1/],
      [{ adagradEpsilon: 0 }, /adagradEpsilon must be a finite number > 0, got 0/],
      [{ adagradResetEpochs: -1 }, /adagradResetEpochs must be an integer >= 0, got -1/],
      [{ lambda: { ...small.lambda, V: -0.3 } }, /lambda\.V must be a finite number >= 0, got -0\.3/],
      [{ lambda: { W: 1e-3, V: 0.3, Ws: 1e-4 } as TrainOptions['lambda'] }, /lambda\.L must be a finite number >= 0, got undefined/],
      [{ minCount: -1 }, /minCount must be an integer >= 0, got -1/],
      [{ evalEvery: 0 }, /evalEvery must be a positive integer, got 0/],
      [{ checkpointEvery: 0 }, /checkpointEvery must be a positive integer, got 0/],
      [{ patience: 0 }, /patience must be a positive integer, got 0/],
      [{ maxMinutes: -1 }, /maxMinutes must be a finite number > 0, got -1/],
      [{ batchSize: 0 }, /batchSize must be a positive integer, got 0/],
      [{ shards: 0 }, /shards must be a positive integer, got 0/],
      [{ dropout: 1 }, /dropout must be a rate in \[0, 1\), got 1/],
      [{ leaf: 'relu' as TrainOptions['leaf'] }, /leaf must be "identity" or "tanh", got "relu"/],
    ];
    for (const [options, message] of bad) await expect(train(trainTrees, undefined, { ...small, ...options }), JSON.stringify(options)).rejects.toThrow(message);
  });

  it('weighs the roots by rootWeight, and 1 is the plain loss', async () => {
    const run = (rootWeight: number) => train(trainTrees, undefined, { ...small, epochs: 1, dropout: 0, rootWeight, threads: 1 });
    const [one, two, plain] = await Promise.all([run(1), run(2), train(trainTrees, undefined, { ...small, epochs: 1, dropout: 0, threads: 1, rootWeight: undefined as unknown as number })]);
    expect(encodeModel(two.model).equals(encodeModel(one.model))).toBe(false);
    // An options object without the field (a checkpoint from before it existed) trains with weight 1.
    expect(encodeModel(plain.model).equals(encodeModel(one.model))).toBe(true);
    await expect(run(-1)).rejects.toThrow(/rootWeight must be a finite number >= 0, got -1/);
    await expect(run(NaN)).rejects.toThrow(/rootWeight must be a finite number >= 0/);
  });

  it('adds the polarity term by polarityWeight; 0 and absent are the plain loss', async () => {
    const run = (polarityWeight: number | undefined) =>
      train(trainTrees, undefined, { ...small, epochs: 1, dropout: 0, polarityWeight, rootPolarityWeight: undefined, threads: 1 });
    const [half, zero, absent] = await Promise.all([run(0.5), run(0), run(undefined)]);
    expect(encodeModel(half.model).equals(encodeModel(absent.model))).toBe(false);
    expect(half.records[0].loss).toBeGreaterThan(absent.records[0].loss); // the term adds to the loss
    // An options object without the field (a checkpoint from before it existed) trains with no term.
    expect(zero.model.params).toEqual(absent.model.params);
    await expect(run(-1)).rejects.toThrow(/polarityWeight must be a finite number >= 0, got -1/);
    await expect(run(Infinity)).rejects.toThrow(/polarityWeight must be a finite number >= 0/);
    await expect(train(trainTrees, undefined, { ...small, classes: 6, epochs: 1 })).rejects.toThrow(/polarityWeight needs an odd number of classes .* has 6/);
  });

  it('weighs the polarity term at the roots by rootPolarityWeight; absent is polarityWeight', async () => {
    const run = (polarityWeight: number, rootPolarityWeight: number | undefined) =>
      train(trainTrees, undefined, { ...small, epochs: 1, dropout: 0, polarityWeight, rootPolarityWeight, threads: 1 });
    const [same, absent, rootsOnly, none] = await Promise.all([run(0.5, 0.5), run(0.5, undefined), run(0, 2), run(0, 0)]);
    expect(same.model.params).toEqual(absent.model.params);
    expect(rootsOnly.model.params).not.toEqual(none.model.params);
    expect(rootsOnly.records[0].loss).toBeGreaterThan(none.records[0].loss);
    await expect(run(0, -1)).rejects.toThrow(/rootPolarityWeight must be a finite number >= 0, got -1/);
    await expect(train(trainTrees, undefined, { ...small, classes: 6, epochs: 1, polarityWeight: 0, rootPolarityWeight: 1 })).rejects.toThrow(
      /rootPolarityWeight needs an odd number of classes .* has 6/,
    );
  });

  it('resumes from an epoch checkpoint to the same bytes as an uninterrupted run', async () => {
    const whole = await train(trainTrees, devTrees, small);
    const dir = path.join(tmp, 'epoch');
    const first = await train(trainTrees, devTrees, { ...small, epochs: 2, checkpointDir: dir });
    expect(first.epochs).toBe(2);
    // Other training or dev trees would replay the shuffle and position over another treebank: refused.
    const checkpoint = path.join(dir, CHECKPOINT_FILE);
    await expect(train(trainTrees.slice(1), devTrees, small, {}, checkpoint)).rejects.toThrow(/its run trains on other trees \(150 trees, sha256 [0-9a-f]{16}\), not these \(149 trees/);
    await expect(train(trainTrees, devTrees.slice(1), small, {}, checkpoint)).rejects.toThrow(/its run selects on other dev trees/);
    await expect(train(trainTrees, undefined, small, {}, checkpoint)).rejects.toThrow(/selects on other dev trees \(.*\), not these \(no dev set\)/);
    const resumed = await train(trainTrees, devTrees, { ...small, checkpointDir: dir }, {}, checkpoint);
    expect(resumed.epochs).toBe(4);
    expect(resumed.records.map((r) => r.epoch)).toEqual([1, 2, 3, 4]);
    expect(encodeModel(resumed.model).equals(encodeModel(whole.model))).toBe(true);
  });

  /**
   * A checkpointing run aborted (as Ctrl-C does) when its n-th batch is done, then resumed from its
   * checkpoint: both results, the checkpoint's trainer state, and an uninterrupted run to compare with.
   */
  const interruptAndResume = async (n: number, name: string) => {
    const whole = await train(trainTrees, devTrees, small);
    const dir = path.join(tmp, name);
    const controller = new AbortController();
    let batches = 0;
    const onProgress = () => void (++batches === n && controller.abort());
    const interrupted = await train(trainTrees, devTrees, { ...small, checkpointDir: dir }, { signal: controller.signal, onProgress });
    expect(interrupted.stoppedBy).toBe('interrupted');
    const file = path.join(dir, CHECKPOINT_FILE);
    const state = JSON.parse(decodeSafetensors(fs.readFileSync(file), file).metadata.state) as { epoch: number; batch: number };
    const resumed = await train(trainTrees, devTrees, small, {}, file);
    expect(encodeModel(resumed.model).equals(encodeModel(whole.model))).toBe(true);
    return { interrupted, state, resumed };
  };

  it('resumes from a mid-epoch interruption to the same bytes', async () => {
    // Epoch 2's batch 2 of 15: with up to 8 batches in flight the stop comes some batches later, inside the
    // epoch. (At batch 8, as this test had it, all 15 were in flight: the stop came at the epoch's end.)
    const { interrupted, state } = await interruptAndResume(17, 'mid');
    expect(interrupted.epochs).toBe(1);
    expect(state.epoch).toBe(1);
    expect(state.batch > 2 && state.batch < 15, `a checkpoint inside epoch 2: ${JSON.stringify(state)}`).toBe(true);
  });

  it('a stop among the last batches of an epoch ends that epoch first, so the resumed run has no empty epoch', async () => {
    // Epoch 2's batch 13 of 15: its last two are in flight, so the stop comes after its last batch.
    const { interrupted, state, resumed } = await interruptAndResume(28, 'epoch-end');
    expect(interrupted.epochs).toBe(2);
    expect(interrupted.records.map((r) => r.epoch)).toEqual([1, 2]);
    expect(state).toMatchObject({ epoch: 2, batch: 0 });
    // Before, the checkpoint said batch 15 of 15, and the resumed run logged an epoch of no batches: loss 0/0.
    for (const r of resumed.records) expect([r.loss, r.sentencesPerSecond].every(Number.isFinite), JSON.stringify(r)).toBe(true);
  });

  it('a run cut short writes its checkpoint into stopCheckpointDir, and a failure to do so still returns the model', async () => {
    const controller = new AbortController();
    const stop = { signal: controller.signal, onProgress: () => controller.abort() };
    const dir = path.join(tmp, 'stop-checkpoint');
    const saved = await train(trainTrees, devTrees, small, { ...stop, stopCheckpointDir: dir });
    expect(saved.stoppedBy).toBe('interrupted');
    expect(saved.checkpoint).toBe(path.join(dir, CHECKPOINT_FILE));
    expect(fs.existsSync(saved.checkpoint!)).toBe(true);
    // A file where the directory should go: the checkpoint cannot be written, the model comes back anyway.
    const blocked = path.join(tmp, 'blocked');
    fs.writeFileSync(blocked, 'not a directory');
    const failed = await train(trainTrees, devTrees, small, { ...stop, stopCheckpointDir: path.join(blocked, 'ckpt') });
    expect(failed.stoppedBy).toBe('interrupted');
    expect(failed.checkpoint).toBeUndefined();
    expect(failed.checkpointError?.message).toMatch(/cannot write checkpoints to .*blocked/);
    expect(failed.model.params.every(Number.isFinite)).toBe(true);
  });

  it('stops on a non-finite loss, naming epoch and batch, without touching the checkpoint on disk', async () => {
    const dir = path.join(tmp, 'nan');
    await train(trainTrees, devTrees, { ...small, epochs: 1, checkpointDir: dir });
    const good = fs.readFileSync(path.join(dir, CHECKPOINT_FILE));
    // A diverging run into the same directory must not touch the checkpoint there.
    const attempt = train(trainTrees, devTrees, { ...small, epochs: 3, learningRate: 1e30, checkpointDir: dir });
    await expect(attempt).rejects.toThrow(NonFiniteError);
    await expect(attempt).rejects.toThrow(/non-finite in epoch 1, batch \d+ of 15 \(a smaller --lr usually helps\)/);
    expect(fs.readFileSync(path.join(dir, CHECKPOINT_FILE)).equals(good)).toBe(true);
    expect(fs.readdirSync(dir)).toEqual([CHECKPOINT_FILE]);
  });

  it('refuses a checkpoint holding non-finite parameters', async () => {
    const dir = path.join(tmp, 'poison');
    await train(trainTrees, devTrees, { ...small, epochs: 1, checkpointDir: dir });
    const file = path.join(dir, CHECKPOINT_FILE);
    const decoded = decodeSafetensors(fs.readFileSync(file), file);
    (decoded.tensors.get('params')!.data as Float32Array)[7] = NaN;
    const tensors = Object.fromEntries([...decoded.tensors].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data }]));
    const poisoned = path.join(tmp, 'poisoned.safetensors');
    fs.writeFileSync(poisoned, encodeSafetensors(tensors, decoded.metadata));
    await expect(train(trainTrees, devTrees, small, {}, poisoned)).rejects.toThrow(/tensor params holds a non-finite value at index 7/);
  });

  it('clears temporary files that killed writers left in the checkpoint directory, and only those', async () => {
    const dir = path.join(tmp, 'stale');
    fs.mkdirSync(dir, { recursive: true });
    // pid 2^22 + 1 is above Linux's pid_max default and so never a live process.
    const stale = path.join(dir, `.${CHECKPOINT_FILE}.4194305.0a1b2c.tmp`);
    const live = path.join(dir, `.${CHECKPOINT_FILE}.${process.pid}.0a1b2c.tmp`);
    const other = path.join(dir, 'notes.tmp');
    for (const f of [stale, live, other]) fs.writeFileSync(f, 'x');
    await train(trainTrees, devTrees, { ...small, epochs: 1, checkpointDir: dir });
    expect(fs.existsSync(stale)).toBe(false);
    expect(fs.existsSync(live)).toBe(true);
    expect(fs.existsSync(other)).toBe(true);
  });

  it('drops the learning rate from the given epoch on', async () => {
    // Factor 0 from epoch 3: epochs 3 and 4 leave the parameters as epoch 2 did.
    const two = await train(trainTrees, undefined, { ...small, epochs: 2 });
    const frozen = await train(trainTrees, undefined, { ...small, epochs: 4, learningRateDrop: { epoch: 3, factor: 0 } });
    expect(Array.from(frozen.model.params)).toEqual(Array.from(two.model.params));
    // A factor of 1 is no drop at all; a real drop changes the result.
    const whole = await train(trainTrees, undefined, small);
    const same = await train(trainTrees, undefined, { ...small, learningRateDrop: { epoch: 2, factor: 1 } });
    expect(Array.from(same.model.params)).toEqual(Array.from(whole.model.params));
    const dropped = await train(trainTrees, undefined, { ...small, learningRateDrop: { epoch: 2, factor: 0.1 } });
    expect(Array.from(dropped.model.params)).not.toEqual(Array.from(whole.model.params));
  });

  it('writes the mean of the parameters from averageFrom on, summed in float64', async () => {
    // Averaging does not change the trajectory: epochs 2-4 of plain runs are what the average sums.
    const plain = { ...small, averageFrom: 0 };
    const ends = await Promise.all([2, 3, 4].map((epochs) => train(trainTrees, undefined, { ...plain, epochs })));
    const averaged = await train(trainTrees, undefined, { ...small, epochs: 4, averageFrom: 2 });
    const mean = Float32Array.from(ends[0].model.params, (_, i) => ends.reduce((sum, r) => sum + r.model.params[i], 0) / 3);
    expect(Buffer.from(averaged.model.params.buffer).equals(Buffer.from(mean.buffer))).toBe(true);
    expect(averaged.records.map((r) => r.averaged)).toEqual([undefined, 1, 2, 3]);
    await expect(train(trainTrees, undefined, { ...small, averageFrom: 1.5 })).rejects.toThrow(/averageFrom must be an integer >= 0, got 1.5/);
  });

  it('starts the search for the best dev model over where the average begins', async () => {
    // Without averaging this run's best dev epoch is an early one (checked, so
    // that the test can fail); averaging from the last epoch leaves that
    // epoch's model, its own parameters, as the only candidate.
    const epochs = 4;
    const plain = await train(trainTrees, devTrees, { ...small, epochs, averageFrom: 0 });
    expect(plain.records.filter((r) => r.best).pop()!.epoch).toBeLessThan(epochs);
    const last = await train(trainTrees, undefined, { ...small, epochs, averageFrom: 0 });
    const restarted = await train(trainTrees, devTrees, { ...small, epochs, averageFrom: epochs });
    expect(restarted.records[epochs - 1].best).toBe(true);
    expect(encodeModel(restarted.model).equals(encodeModel(last.model))).toBe(true);
  });

  it('resumes a running average from its checkpoint to the same bytes', async () => {
    const options = { ...small, averageFrom: 2 };
    const whole = await train(trainTrees, devTrees, options);
    const dir = path.join(tmp, 'average');
    await train(trainTrees, devTrees, { ...options, epochs: 3, checkpointDir: dir });
    const file = path.join(dir, CHECKPOINT_FILE);
    const saved = decodeSafetensors(fs.readFileSync(file), file);
    expect(saved.tensors.get('averageSum')!.dtype).toBe('F64');
    const resumed = await train(trainTrees, devTrees, { ...options, checkpointDir: dir }, {}, file);
    expect(encodeModel(resumed.model).equals(encodeModel(whole.model))).toBe(true);
    // A sum that is not finite, or state that promises a sum the file lacks, is refused.
    const tensors = Object.fromEntries([...saved.tensors].map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: t.data }])) as Parameters<typeof encodeSafetensors>[0];
    (tensors.averageSum.data as Float64Array)[3] = Infinity;
    fs.writeFileSync(path.join(tmp, 'bad-sum.safetensors'), encodeSafetensors(tensors, saved.metadata));
    await expect(train(trainTrees, devTrees, options, {}, path.join(tmp, 'bad-sum.safetensors'))).rejects.toThrow(/tensor averageSum holds a non-finite value at index 3/);
    delete tensors.averageSum;
    fs.writeFileSync(path.join(tmp, 'no-sum.safetensors'), encodeSafetensors(tensors, saved.metadata));
    await expect(train(trainTrees, devTrees, options, {}, path.join(tmp, 'no-sum.safetensors'))).rejects.toThrow(/averages 2 epochs but lacks the tensor averageSum/);
  });

  it('distils from teacher models: weight 0 is plain training, any thread count the same bytes, and resuming needs only the checkpoint', async () => {
    const teacherFile = path.join(tmp, 'teacher.safetensors');
    saveModel((await train(trainTrees, undefined, { ...small, epochs: 2, seed: 9 })).model, teacherFile);
    const same = (a: { model: Parameters<typeof encodeModel>[0] }, b: { model: Parameters<typeof encodeModel>[0] }) => encodeModel(a.model).equals(encodeModel(b.model));
    const plain = await train(trainTrees, devTrees, small);
    // Weight 0 makes every target the one-hot of the gold label: the plain loss, to the bit.
    expect(same(await train(trainTrees, devTrees, { ...small, distill: { weight: 0, teachers: [teacherFile] } }), plain)).toBe(true);
    const options: TrainOptions = { ...small, distill: { weight: 0.5, teachers: [teacherFile, teacherFile] } };
    const whole = await train(trainTrees, devTrees, options);
    expect(same(whole, plain)).toBe(false);
    expect(same(await train(trainTrees, devTrees, { ...options, threads: 3 }), whole)).toBe(true);
    const dir = path.join(tmp, 'distill');
    await train(trainTrees, devTrees, { ...options, epochs: 2, checkpointDir: dir });
    fs.rmSync(teacherFile);
    const file = path.join(dir, CHECKPOINT_FILE);
    const resumed = await train(trainTrees, devTrees, options, {}, file);
    expect(same(resumed, whole)).toBe(true);
    await expect(train(trainTrees, devTrees, options)).rejects.toThrow(/teacher\.safetensors/);
    // A checkpoint's targets are checked like its parameters.
    const saved = decodeSafetensors(fs.readFileSync(file), file);
    const tensors = Object.fromEntries([...saved.tensors].map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: t.data }])) as Parameters<typeof encodeSafetensors>[0];
    (tensors.targets.data as Float32Array)[5] = -1;
    fs.writeFileSync(path.join(tmp, 'bad-targets.safetensors'), encodeSafetensors(tensors, saved.metadata));
    await expect(train(trainTrees, devTrees, options, {}, path.join(tmp, 'bad-targets.safetensors'))).rejects.toThrow(/tensor targets holds -1 at index 5, expected a finite value >= 0/);
    await expect(train(trainTrees, devTrees, { ...options, distill: { weight: 1.5, teachers: [teacherFile] } })).rejects.toThrow(/distillation weight must be in \[0, 1\], got 1.5/);
    await expect(train(trainTrees, devTrees, { ...options, distill: { weight: 0.5, teachers: [] } })).rejects.toThrow(/at least one teacher/);
  });

  it('stops early after `patience` evaluations without improvement', async () => {
    // A learning rate this small cannot move the dev accuracy after the first epoch.
    const result = await train(trainTrees, devTrees, { ...small, epochs: 20, learningRate: 1e-9, patience: 2 });
    expect(result.stoppedBy).toBe('patience');
    expect(result.epochs).toBe(3);
  });

  it('rejects a checkpoint that is not one', async () => {
    const bogus = path.join(tmp, 'model.safetensors');
    fs.writeFileSync(bogus, encodeModel((await train(trainTrees, undefined, { ...small, epochs: 1 })).model));
    await expect(train(trainTrees, devTrees, small, {}, bogus)).rejects.toThrow(/not an rntn checkpoint/);
    // A checkpoint whose config no longer fits its parameters, or names a leaf the core does not know.
    const dir = path.join(tmp, 'config');
    await train(trainTrees, undefined, { ...small, epochs: 1, checkpointDir: dir });
    const file = path.join(dir, CHECKPOINT_FILE);
    const saved = decodeSafetensors(fs.readFileSync(file), file);
    const tensors = Object.fromEntries([...saved.tensors].map(([k, t]) => [k, { dtype: t.dtype, shape: t.shape, data: t.data }])) as Parameters<typeof encodeSafetensors>[0];
    const config = JSON.parse(saved.metadata.config);
    for (const [name, damaged] of [['leaf.safetensors', { ...config, leaf: 'relu' }], ['dim.safetensors', { ...config, dim: config.dim + 1 }]] as const) {
      fs.writeFileSync(path.join(tmp, name), encodeSafetensors(tensors, { ...saved.metadata, config: JSON.stringify(damaged) }));
      await expect(train(trainTrees, undefined, small, {}, path.join(tmp, name))).rejects.toThrow(new RegExp(`${name}: checkpoint config .* does not fit`));
    }
  });
});
