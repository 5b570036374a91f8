/**
 * Minibatch training with AdaGrad, dev-set model selection and checkpoints
 * that make an interrupted run end with the same bytes as an uninterrupted one.
 *
 * The objective of a minibatch of B trees is
 *   (1/B)·Σ_nodes −log y[label]  +  Σ_groups (λ_g/2)·‖θ_g‖²
 * as in CoreNLP: the loss is averaged over the trees of the batch so the
 * learning rate does not depend on the batch size, and regularisation is
 * applied per batch. Biases (b, bs) are not regularised, and only the word
 * vectors a batch uses are (their gradient is sparse; regularising every row
 * of L each batch would cost a dense pass over the vocabulary and shrink rare
 * words' vectors between their occurrences). DESIGN.md: (λ/2)‖θ‖² adds λθ.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TreeTable } from './batch';
import { evaluate, type Metrics } from './evaluate';
import { Model, type LeafActivation } from './model';
import { native, nativeDims } from './native';
import { SLOTS, TrainingPool, type UpdateConfig } from './pool';
import { Random } from './random';
import { checkWritable, readFileNamed, removeStaleTemporaries, writeFileAtomic } from './files';
import { loadModel } from './model-file';
import { ensembleClasses, ensembleProbabilities } from './predict';
import { decodeSafetensors, encodeSafetensors } from './safetensors';
import { formatTree, type TreeNode } from './tree';
import { Vocabulary } from './vocab';

export interface Regularisation {
  W: number;
  V: number;
  Ws: number;
  L: number;
}

export interface TrainOptions {
  dim: number;
  classes: number;
  leaf: LeafActivation;
  batchSize: number;
  /** Upper bound on epochs. */
  epochs: number;
  /**
   * Stop once this many minutes of training have passed (summed over
   * resumes), after the batches that were already posted then (the pool
   * runs up to SLOTS = 8 batches ahead, src/pool.ts).
   */
  maxMinutes?: number;
  learningRate: number;
  /**
   * From this epoch on (counting from 1), the learning rate is
   * learningRate × learningRateDrop.factor; undefined keeps it constant.
   */
  learningRateDrop?: { epoch: number; factor: number };
  /** Added to √(Σg²) in AdaGrad's denominator. */
  adagradEpsilon: number;
  /** Clear AdaGrad's history every this many epochs (CoreNLP: 1); 0 never. */
  adagradResetEpochs: number;
  lambda: Regularisation;
  seed: number;
  /**
   * Words seen fewer times in training map to `*UNK*`. With 1, `*UNK*` never
   * occurs in training and keeps its random initial vector, which is then
   * what every unseen dev/test word gets; with 2 the singletons train it as
   * "a rare word" (measured on SST: mean test root accuracy over 3 seeds
   * +1.1 points, README).
   */
  minCount: number;
  /** Evaluate on the dev set every this many epochs. */
  evalEvery: number;
  /** Stop after this many dev evaluations without a better root 5-class accuracy. */
  patience?: number;
  /** Write a checkpoint here every `checkpointEvery` epochs (and on interruption). */
  checkpointDir?: string;
  checkpointEvery: number;
  /** Worker threads computing shards (default: the available cores). Does not change the result. */
  threads: number;
  /**
   * Shards per minibatch, each a separately summed gradient. Fixes the
   * arithmetic (the result is the same for any thread count), and caps the
   * threads that can help: more shards scale further but make each shard's
   * GEMMs narrower.
   */
  shards: number;
  /**
   * Dropout rate on the classifier's input during training (0 = none). The
   * mask of a shard is a function of (seed, epoch, batch, shard), so it does
   * not depend on the thread count and a resumed run replays it.
   */
  dropout: number;
  /**
   * Loss weight of each training sentence's root (the other nodes weigh 1):
   * the paper's objective sums every node alike, so the roots, 2.7 % of SST's
   * labelled nodes, carry little of it. 1 = the paper (docs/training.md).
   * Checkpoints from before the option existed resume with 1.
   */
  rootWeight: number;
  /**
   * From this epoch on, an epoch's model — the one scored on dev, kept when
   * best, and written — is the mean of the parameters at the end of epochs
   * `averageFrom`…now (Polyak–Ruppert averaging; training itself goes on
   * from the parameters as they are), and the search for the best model
   * starts over there: models from before it are no longer candidates.
   * 0 or absent: each epoch's own parameters (checkpoints from before the
   * option existed resume so).
   */
  averageFrom?: number;
  /**
   * Weight β of the polarity term (0: none): each labelled training node
   * whose gold class is not neutral adds β·(−log Σ y_c over the classes on
   * its side), the split the paper's binary metric scores. Needs an odd
   * number of classes. Absent means 0, so checkpoints from before the
   * option existed resume with the loss they were trained on;
   * DEFAULT_TRAIN_OPTIONS sets 0 here and 1 at the roots (rootPolarityWeight).
   */
  polarityWeight?: number;
  /**
   * The polarity term's weight at each sentence's root instead of
   * `polarityWeight` (absent: the same), so that it can train the sentences'
   * polarity without the phrases' (docs/training.md).
   */
  rootPolarityWeight?: number;
  /**
   * Knowledge distillation: every labelled training node's loss aims at
   * (1 − weight)·onehot(gold) + weight·p̄, p̄ the mean class probabilities of
   * the teacher models (files, read once at the start; a checkpoint keeps
   * the targets, so resuming does not need them). Absent: the gold labels.
   */
  distill?: { weight: number; teachers: string[] };
}

/** TrainOptions.distill's weight when a user names teachers but no weight. */
export const DEFAULT_DISTILL_WEIGHT = 0.5;

export const DEFAULT_TRAIN_OPTIONS: TrainOptions = {
  dim: 25,
  classes: 5,
  leaf: 'identity',
  batchSize: 27,
  // 40, not more: the drop and the averaging below start at 16 and were
  // measured over 40 epochs, and 100 gave the same test accuracy on SST
  // (seeds 1-10, paired: root +0.23 ± 0.16, root binary −0.03 ± 0.12, all
  // −0.02, docs/training.md) in 2.3× the time.
  epochs: 40,
  learningRate: 0.01,
  // A tenfold drop from epoch 16 on (SST, 10 seeds each, docs/training.md):
  // best dev root 45.5 against 45.1 without, test root 44.8 against 44.3,
  // all-node 80.4 against 80.1, and the best epoch comes by epoch ~30.
  learningRateDrop: { epoch: 16, factor: 0.1 },
  adagradEpsilon: 1e-3,
  adagradResetEpochs: 1,
  // λ_V is 300× CoreNLP's 1e-3: with 1e-3, AdaGrad's per-coordinate steps
  // grow V until cᵀV[k]c ≈ 25 and 96-99 % of units above height 2 saturate
  // (tanh' ≈ 0, so the root's error never reaches the words); on SST dev,
  // root accuracy rises from 41.0 to 45.0 (docs/training.md).
  lambda: { W: 1e-3, V: 0.3, Ws: 1e-4, L: 1e-4 },
  seed: 1,
  minCount: 2,
  evalEvery: 1,
  checkpointEvery: 1,
  threads: os.availableParallelism(),
  shards: 4,
  dropout: 0,
  // The paper's loss. Weight 2 tied with it on dev over 20 seeds (best dev
  // root 45.7 against 45.8) while test root binary rose by 0.5: an option,
  // not the default, since the dev set does not choose it (docs/training.md).
  rootWeight: 1,
  // Not the paper's loss: the polarity term at the roots only, weight 1
  // (equal to the 5-class term's). Over 30 SST seeds, paired: against the
  // paper's loss dev root +0.77 ± 0.20 (epochs 16–40), test root +0.62 ±
  // 0.20, root binary +0.16 ± 0.16, all-node ±0; against the term on every
  // node (session 11's default) dev root +0.45 ± 0.19, test all-node
  // +0.80, root −0.42 ± 0.23, root binary −0.41 ± 0.13. Chosen by dev, the
  // rule for every default: the term on every node won on test root mostly
  // by calling fewer roots neutral, which test's label mix rewards and dev's
  // does not (docs/training.md, "The polarity term, looked at again").
  polarityWeight: 0,
  rootPolarityWeight: 1,
  // From the learning-rate drop on (docs/training.md, "Which model to write"):
  // over 60 SST seeds, the best averaged model on dev against the best single
  // epoch gave test all-node +0.06 ± 0.01, all-node binary +0.11 ± 0.02,
  // root binary +0.17 ± 0.06 and root +0.22 ± 0.13 (paired; on the 40 seeds
  // run after choosing, root +0.14 ± 0.11), and a model from before the drop
  // can no longer be picked by a lucky dev score (one seed wrote epoch 15's
  // and scored root 39.7).
  averageFrom: 16,
};

/** One line of the training log (JSON Lines), written after every epoch. */
export interface EpochRecord {
  epoch: number;
  /** Mean −log y[label] (distilling: −Σ t log y; plus the polarity term) per training node over the epoch (unregularised; roots count `rootWeight` times). */
  loss: number;
  /** Dev metrics of this epoch's model (the running average from averageFrom on). */
  dev?: Pick<Metrics, 'loss' | 'rootFine' | 'allFine' | 'rootBinary' | 'allBinary'>;
  /** Whether this epoch's model is the best on dev so far (the one that will be written). */
  best?: boolean;
  /** How many epochs' parameters this epoch's model averages (TrainOptions.averageFrom); absent: its own. */
  averaged?: number;
  sentencesPerSecond: number;
  /** Training time so far, in seconds: the epochs' batches, without dev evaluation or checkpoints (what maxMinutes counts; summed over resumes). */
  seconds: number;
  /** Wall time since training began, in seconds, dev evaluation and checkpoints included (summed over resumes). */
  wallSeconds: number;
}

export interface Progress {
  epoch: number;
  batch: number;
  batches: number;
  /** Mean loss per node over the epoch so far. */
  loss: number;
  sentencesPerSecond: number;
  seconds: number;
}

export interface TrainHooks {
  onEpoch?(record: EpochRecord): void;
  onProgress?(progress: Progress): void;
  /** Aborting stops training after the batches in flight (at most SLOTS = 8), writing a checkpoint first (into checkpointDir, else stopCheckpointDir, if either is set). */
  signal?: AbortSignal;
  /**
   * Where a run cut short (aborted, or out of maxMinutes) writes its
   * checkpoint when `checkpointDir` is unset (made then, not before): a run
   * stopped before its end can then be resumed even if it was started
   * without checkpoints. Runs that end by themselves write nothing there.
   */
  stopCheckpointDir?: string;
}

export interface TrainResult {
  /** The model to keep: the best epoch model on dev when there is a dev set, else the last (TrainOptions.averageFrom). */
  model: Model;
  /** The settings the run used: a resumed run's come from its checkpoint. */
  options: TrainOptions;
  epochs: number;
  stoppedBy: 'epochs' | 'time' | 'patience' | 'interrupted';
  bestDev?: Metrics;
  records: EpochRecord[];
  /** The newest checkpoint this run wrote or resumed from, if any: what `resume` takes to continue it. */
  checkpoint?: string;
  /** Why the checkpoint of a run cut short could not be written into `stopCheckpointDir` (the model is returned all the same). */
  checkpointError?: Error;
}

/** Training stopped because the loss or gradient stopped being finite. */
export class NonFiniteError extends Error {
  override readonly name = 'NonFiniteError';
}

/**
 * AdaGrad (Duchi et al. 2011) as CoreNLP runs it: θ −= η·g / (√(Σg²) + ε),
 * with the history reset every few epochs. It updates index ranges so that
 * the sparse rows of L cost only what a batch touches.
 */
export class AdaGrad {
  /** Σg² per parameter; in shared memory, because the pool's workers apply the steps. */
  readonly history: Float32Array;

  // No learning rate here: it changes during a run (learningRateDrop), so it
  // travels with each batch to whoever applies the step.
  constructor(
    size: number,
    readonly epsilon: number,
  ) {
    this.history = new Float32Array(new SharedArrayBuffer(4 * size));
  }

  /**
   * One step over the index ranges `ranges` ([start, end) pairs, with one L2
   * weight each in `lambdas`): g = scale·Σ_s grads[s] + λ·θ, shards summed in
   * order so the result does not depend on who computed them; then the
   * update, and the gradient ranges are zeroed for the next batch. Returns
   * false when a gradient value was not finite (the step is then garbage:
   * the caller must stop). Runs in native code (native/adagrad.h); during
   * training each pool worker runs it on its share (src/pool.ts, updateShare).
   */
  step(params: Float32Array, grads: Float32Array[], ranges: Int32Array, lambdas: Float32Array, scale: number, learningRate: number): boolean {
    return native().adagradStep(params, this.history, grads, ranges, lambdas, scale, learningRate, this.epsilon);
  }

  reset(): void {
    this.history.fill(0);
  }
}

/** Everything a checkpoint restores, beyond the parameters and AdaGrad's history. */
interface TrainerState {
  /** Epochs completed. */
  epoch: number;
  /** Batches of the current epoch already applied. */
  batch: number;
  /** The generator's state at the start of the current epoch: its shuffle is replayed on resume. */
  epochRng: number[];
  seconds: number;
  /** EpochRecord.wallSeconds at the last epoch's end; absent in checkpoints from before session 14. */
  wallSeconds?: number;
  bestScore: number;
  bestEpoch: number;
  evalsWithoutImprovement: number;
  records: EpochRecord[];
  /** Epochs summed into the running average (TrainOptions.averageFrom); absent before it starts. */
  averaged?: number;
  /** What the run trains and selects on (treebankPrint); absent in checkpoints from before session 13, and in runs that never checkpoint. */
  data?: { train: string; dev?: string };
}

/**
 * A treebank's identity for a checkpoint: its tree count and the SHA-256 of
 * its trees, each written as PTB with its words JSON-quoted (so that any
 * word a tree built in code may hold is unambiguous), one a line. A resumed
 * run replays the epoch's shuffle and position over the trees it is given,
 * so other trees (another file, the same file edited) would not continue the
 * run but start a different one from its middle.
 */
function treebankPrint(trees: readonly TreeNode[]): string {
  const hash = createHash('sha256');
  for (const tree of trees) hash.update(formatTree(tree, undefined, JSON.stringify) + '\n');
  return `${trees.length} trees, sha256 ${hash.digest('hex').slice(0, 16)}`;
}

const CHECKPOINT_FORMAT = 'rntn-checkpoint/1';
export const CHECKPOINT_FILE = 'checkpoint.safetensors';

/** Trains a new model, or continues the one in `resume` (a checkpoint file). */
export async function train(
  trainTrees: readonly TreeNode[],
  devTrees: readonly TreeNode[] | undefined,
  options: TrainOptions,
  hooks: TrainHooks = {},
  resume?: string,
): Promise<TrainResult> {
  if (trainTrees.length === 0) throw new RangeError('no training trees');
  let model: Model;
  let history: Float32Array | undefined;
  let best: Float32Array | undefined;
  // Σ of the parameters at the end of each epoch from averageFrom on, in
  // float64 so that the mean does not depend on how many epochs it holds.
  let averageSum: Float64Array | undefined;
  // TrainOptions.distill's per-node targets, in table order; from the checkpoint when resuming.
  let targets: Float32Array | undefined;
  let state: TrainerState;
  // Only checkpoints carry it, so a run that writes none does not pay for it (~0.2 s on SST train).
  const dataPrint = () => ({ train: treebankPrint(trainTrees), dev: devTrees && devTrees.length > 0 ? treebankPrint(devTrees) : undefined });
  // `!== undefined`: an empty path is a file that cannot be read, not a fresh run.
  if (resume !== undefined) {
    const restored = readCheckpoint(resume);
    model = restored.model;
    history = restored.history;
    best = restored.best;
    averageSum = restored.averageSum;
    targets = restored.targets;
    state = restored.state;
    const data = dataPrint();
    if (state.data) {
      const given = (print: string | undefined) => print ?? 'no dev set';
      if (state.data.train !== data.train) {
        throw new Error(`${resume}: its run trains on other trees (${state.data.train}), not these (${data.train}); resuming would not continue it`);
      }
      if (state.data.dev !== data.dev) {
        throw new Error(`${resume}: its run selects on other dev trees (${given(state.data.dev)}), not these (${given(data.dev)}); resuming would not continue it`);
      }
    }
    state.data = data;
    // The run's settings come from the checkpoint; only the stopping rules may change.
    options = {
      ...restored.options,
      epochs: options.epochs,
      maxMinutes: options.maxMinutes,
      patience: options.patience,
      threads: options.threads,
      // By default a resumed run keeps checkpointing beside the checkpoint it resumed from.
      checkpointDir: options.checkpointDir ?? path.dirname(resume),
    };
  } else {
    const vocab = Vocabulary.fromTrees(trainTrees, options.minCount);
    model = Model.create(vocab, { dim: options.dim, classes: options.classes, leaf: options.leaf, seed: options.seed });
    state = {
      epoch: 0,
      batch: 0,
      // A stream of its own for shuffling, so initialisation and order are independent.
      epochRng: [...new Random(options.seed + 0x5eed).state],
      seconds: 0,
      bestScore: -Infinity,
      bestEpoch: 0,
      evalsWithoutImprovement: 0,
      records: [],
      data: options.checkpointDir ? dataPrint() : undefined,
    };
  }
  checkTrainOptions(options);
  const adagrad = new AdaGrad(model.params.length, options.adagradEpsilon);
  if (history) adagrad.history.set(history);
  // Checkpoints written before the option existed trained with weight 1.
  const rootWeight = options.rootWeight ?? 1;
  if (!(Number.isFinite(rootWeight) && rootWeight >= 0)) throw new RangeError(`rootWeight must be a finite number >= 0, got ${rootWeight}`);
  const polarityWeight = options.polarityWeight ?? 0;
  const rootPolarityWeight = options.rootPolarityWeight ?? polarityWeight;
  for (const [name, value] of [['polarityWeight', polarityWeight], ['rootPolarityWeight', rootPolarityWeight]] as const) {
    if (!(Number.isFinite(value) && value >= 0)) throw new RangeError(`${name} must be a finite number >= 0, got ${value}`);
    if (value > 0 && model.config.classes % 2 === 0) {
      throw new RangeError(`${name} needs an odd number of classes (the middle one is neutral), the model has ${model.config.classes}`);
    }
  }
  const averageFrom = options.averageFrom ?? 0;
  const average = (): Float32Array | undefined =>
    averageSum && state.averaged ? Float32Array.from(averageSum, (x) => x / state.averaged!) : undefined;

  // Parameters and per-shard gradients in shared memory, for the workers to use in place.
  const shared = (n: number) => new Float32Array(new SharedArrayBuffer(4 * n));
  const sharedParams = shared(model.params.length);
  sharedParams.set(model.params);
  model = new Model(model.config, model.vocab, sharedParams);
  const params = model.params;
  const grads = Array.from({ length: options.shards }, () => shared(params.length));
  const labelled = TreeTable.fromTrees(trainTrees, model.vocab, { shared: true });
  if (options.distill && !targets) targets = distillationTargets(options.distill, trainTrees, labelled.label, model.config.classes);
  if (targets && targets.length !== labelled.label.length * model.config.classes) {
    throw new RangeError(`the distillation targets hold ${targets.length} values, the training trees need ${labelled.label.length * model.config.classes}`);
  }
  let table = labelled;
  if (targets) {
    const target = shared(targets.length);
    target.set(targets);
    table = new TreeTable({ ...labelled.data, target });
  }
  const treeNodes = (tree: number) => table.treeStart[tree + 1] - table.treeStart[tree];
  const update = updateConfig(model, options.lambda, adagrad);

  let stoppedBy: TrainResult['stoppedBy'] = 'epochs';
  const makeCheckpointDir = (dir: string) => {
    const file = path.join(dir, CHECKPOINT_FILE);
    try {
      if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new Error(`cannot write checkpoints to ${dir}: ${(e as Error).message}`, { cause: e });
    }
    checkWritable(file, 'checkpoints');
    removeStaleTemporaries(file);
  };
  // Made and checked before the first epoch: a bad directory fails the run now, not at its first checkpoint.
  if (options.checkpointDir) makeCheckpointDir(options.checkpointDir);
  // The stop directory is made only if the run is cut short; what stands there already must take a checkpoint.
  else if (hooks.stopCheckpointDir !== undefined && fs.existsSync(hooks.stopCheckpointDir)) {
    checkWritable(path.join(hooks.stopCheckpointDir, CHECKPOINT_FILE), 'checkpoints');
  }
  let lastCheckpointEpoch = state.epoch;
  // The newest checkpoint of this run (or the one it resumed from): what a failure points the user to.
  let lastCheckpoint = resume;
  let checkpointError: Error | undefined;
  // Wall time of the whole run, earlier processes' included (a resumed run starts from its checkpoint's).
  const runStarted = process.hrtime.bigint();
  // Checkpoints from before session 14 have no wall time: their training time is the closest figure.
  const wallBefore = state.wallSeconds ?? state.seconds;
  const wallSeconds = () => wallBefore + Number(process.hrtime.bigint() - runStarted) / 1e9;
  const checkpoint = (dir = options.checkpointDir) => {
    if (!dir) return;
    state.wallSeconds = wallSeconds();
    // A run that checkpoints only when cut short has not recorded its trees yet; resuming must be able to refuse others.
    state.data ??= dataPrint();
    const file = path.join(dir, CHECKPOINT_FILE);
    writeCheckpoint(file, model, adagrad.history, best, averageSum, targets, options, state);
    lastCheckpoint = file;
  };

  const pool = new TrainingPool({
    threads: options.threads,
    params,
    grads,
    table: table.data,
    dims: nativeDims(model),
    update,
    batchSize: options.batchSize,
    lossWeights: { rootWeight, polarityWeight, rootPolarityWeight },
  });
  try {
    training: while (state.epoch < options.epochs) {
      if (state.batch === 0 && options.adagradResetEpochs > 0 && state.epoch > 0 && state.epoch % options.adagradResetEpochs === 0) {
        adagrad.reset();
      }
      const rng = new Random(Uint32Array.from(state.epochRng));
      const order = rng.shuffle(Array.from(trainTrees.keys()));
      const batches = Math.ceil(order.length / options.batchSize);
      let epochLoss = 0;
      let epochNodes = 0;
      let epochSentences = 0;
      let epochSeconds = 0;
      // Wall time from here, the event-loop turns between batches included
      // (summing each batch's own interval left them out: ~1 % more sentences/s
      // than the clock on the wall).
      const epochStarted = process.hrtime.bigint();
      const secondsBefore = state.seconds;
      // The pool runs up to SLOTS batches ahead: later batches are posted
      // before batch b's result is awaited, so the workers go from one to the
      // next without waiting for this thread. A stop (time, Ctrl-C) therefore
      // takes effect after the batches in flight, which are then counted like
      // any other.
      const drop = options.learningRateDrop;
      const learningRate = drop && state.epoch + 1 >= drop.epoch ? options.learningRate * drop.factor : options.learningRate;
      const treesIn = (b: number) => Math.min(options.batchSize, order.length - b * options.batchSize);
      let nextToPost = state.batch;
      let stopping: TrainResult['stoppedBy'] | undefined;
      const postAhead = () => {
        while (!stopping && nextToPost < batches && pool.inFlight < SLOTS) {
          const members = Int32Array.from(order.slice(nextToPost * options.batchSize, (nextToPost + 1) * options.batchSize));
          const shards = splitIntoShards(members, options.shards, treeNodes);
          const b = nextToPost;
          const dropout = (options.dropout ?? 0) > 0 ? shards.map((_, shard) => ({ rate: options.dropout, seed: dropoutSeed(options.seed, state.epoch, b, shard) })) : undefined;
          pool.post(shards, { scale: 1 / members.length, learningRate }, dropout);
          nextToPost++;
        }
      };
      for (; state.batch < batches; state.batch++) {
        postAhead();
        const { loss, nodes, gradientFinite } = await pool.finish();
        const diverged = (what: string) =>
          new NonFiniteError(
            `the ${what} became non-finite in epoch ${state.epoch + 1}, batch ${state.batch + 1} of ${batches}` +
              (lastCheckpoint ? `; the last good checkpoint is ${lastCheckpoint}` : '') +
              ' (a smaller --lr usually helps)',
          );
        if (!Number.isFinite(loss)) throw diverged('loss');
        if (!gradientFinite) throw diverged('gradient');
        epochLoss += loss;
        epochNodes += nodes;
        epochSentences += treesIn(state.batch);
        epochSeconds = Number(process.hrtime.bigint() - epochStarted) / 1e9;
        state.seconds = secondsBefore + epochSeconds;
        hooks.onProgress?.({
          epoch: state.epoch + 1,
          batch: state.batch + 1,
          batches,
          loss: epochLoss / epochNodes,
          sentencesPerSecond: epochSentences / epochSeconds,
          seconds: state.seconds,
        });
        if (!stopping && options.maxMinutes !== undefined && state.seconds >= options.maxMinutes * 60) stopping = 'time';
        if (!stopping && hooks.signal?.aborted) stopping = 'interrupted';
        // After the epoch's last batch the stop waits for the epoch's end (its record, dev
        // evaluation and checkpoint): a checkpoint at batch = batches would resume into an
        // epoch with no batches left, whose record would be 0/0.
        if (stopping && pool.inFlight === 0 && state.batch + 1 < batches) {
          state.batch++;
          stoppedBy = stopping;
          break training;
        }
        // Let signal handlers and timers run between batches.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }

      state.epoch++;
      state.batch = 0;
      state.epochRng = [...rng.state];
      const record: EpochRecord = {
        epoch: state.epoch,
        loss: epochLoss / epochNodes,
        sentencesPerSecond: epochSentences / epochSeconds,
        seconds: state.seconds,
        wallSeconds: 0, // set below, once the dev evaluation is done
      };
      if (averageFrom > 0 && state.epoch >= averageFrom) {
        if (!averageSum) {
          averageSum = new Float64Array(params.length);
          state.averaged = 0;
          // The best so far is from before the average began: no longer a candidate.
          best = undefined;
          state.bestScore = -Infinity;
          state.bestEpoch = 0;
          state.evalsWithoutImprovement = 0;
        }
        for (let i = 0; i < params.length; i++) averageSum[i] += params[i];
        record.averaged = ++state.averaged!;
      }
      if (devTrees && devTrees.length > 0 && state.epoch % options.evalEvery === 0) {
        // The epoch's model: the running average once it has begun (a fresh array), else the parameters themselves.
        const averaged = average();
        const epochModel = averaged ? new Model(model.config, model.vocab, averaged) : model;
        const dev = evaluate(epochModel, devTrees);
        record.dev = { loss: dev.loss, rootFine: dev.rootFine, allFine: dev.allFine, rootBinary: dev.rootBinary, allBinary: dev.allBinary };
        record.best = dev.rootFine > state.bestScore;
        if (record.best) {
          state.bestScore = dev.rootFine;
          state.bestEpoch = state.epoch;
          state.evalsWithoutImprovement = 0;
          best = averaged ?? Float32Array.from(params);
        } else {
          state.evalsWithoutImprovement++;
        }
      }
      state.wallSeconds = record.wallSeconds = wallSeconds();
      state.records.push(record);
      hooks.onEpoch?.(record);
      if (state.epoch - lastCheckpointEpoch >= options.checkpointEvery) {
        checkpoint();
        lastCheckpointEpoch = state.epoch;
      }
      if (options.patience !== undefined && state.evalsWithoutImprovement >= options.patience) {
        stoppedBy = 'patience';
        break;
      }
      if (stopping && state.epoch < options.epochs) {
        stoppedBy = stopping;
        break;
      }
    }
    if ((stoppedBy === 'interrupted' || stoppedBy === 'time') && !options.checkpointDir && hooks.stopCheckpointDir) {
      // A checkpoint the user did not ask for must not cost the model: on failure the run still returns it.
      try {
        makeCheckpointDir(hooks.stopCheckpointDir);
        checkpoint(hooks.stopCheckpointDir);
      } catch (e) {
        checkpointError = e as Error;
      }
    } else if (stoppedBy !== 'epochs' && stoppedBy !== 'patience') checkpoint();
    else if (state.epoch !== lastCheckpointEpoch) checkpoint();
  } finally {
    await pool.close();
  }

  // The best epoch model on dev; without one, the last epoch's model (the running average once it has begun).
  const result = new Model(model.config, model.vocab, best ? Float32Array.from(best) : (average() ?? Float32Array.from(params)));
  const bestDev = devTrees && devTrees.length > 0 ? evaluate(result, devTrees) : undefined;
  return { model: result, options, epochs: state.epoch, stoppedBy, bestDev, records: state.records, checkpoint: lastCheckpoint, checkpointError };
}

/**
 * Refuses options the trainer would misread rather than reject. The command
 * line checks its flags, but API callers come straight here: a negative
 * `epochs` used to train 0 epochs and return the initial model, a NaN
 * learning rate to run until the loss became NaN, and a 0 `evalEvery` to
 * never evaluate. Fields absent from checkpoints of older versions keep
 * their old meaning. Checked elsewhere, where they are used: the loss
 * weights in train (where their defaults are applied), `leaf`, `dim` and
 * `classes` by Model (an unknown leaf used to train identity leaves and
 * record its name), `minCount` by Vocabulary.fromTrees, `seed` by Random.
 */
function checkTrainOptions(o: TrainOptions): void {
  const fail = (name: string, expected: string, value: unknown): never => {
    throw new RangeError(`${name} must be ${expected}, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
  };
  const integer = (name: string, value: number | undefined, least: 0 | 1) => {
    if (!(Number.isInteger(value) && value! >= least)) fail(name, least === 0 ? 'an integer >= 0' : 'a positive integer', value);
  };
  const finite = (name: string, value: number | undefined, positive: boolean) => {
    if (!(Number.isFinite(value) && (positive ? value! > 0 : value! >= 0))) fail(name, positive ? 'a finite number > 0' : 'a finite number >= 0', value);
  };
  integer('epochs', o.epochs, 0);
  integer('batchSize', o.batchSize, 1);
  integer('evalEvery', o.evalEvery, 1);
  integer('checkpointEvery', o.checkpointEvery, 1);
  integer('adagradResetEpochs', o.adagradResetEpochs, 0);
  integer('threads', o.threads, 1);
  integer('shards', o.shards, 1);
  if (o.patience !== undefined) integer('patience', o.patience, 1);
  if (o.averageFrom !== undefined) integer('averageFrom', o.averageFrom, 0);
  if (o.maxMinutes !== undefined) finite('maxMinutes', o.maxMinutes, true);
  finite('learningRate', o.learningRate, true);
  if (o.learningRateDrop !== undefined) {
    integer('learningRateDrop.epoch', o.learningRateDrop.epoch, 1);
    finite('learningRateDrop.factor', o.learningRateDrop.factor, false); // 0 freezes training from that epoch on
  }
  // ε > 0: a coordinate whose gradient has always been 0 would otherwise step by 0 / 0.
  finite('adagradEpsilon', o.adagradEpsilon, true);
  for (const group of ['W', 'V', 'Ws', 'L'] as const) finite(`lambda.${group}`, o.lambda?.[group], false);
  // '' would read as "no checkpoints" below, silently.
  if (o.checkpointDir === '') fail('checkpointDir', 'a directory path or absent', o.checkpointDir);
  const dropout = o.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) fail('dropout', 'a rate in [0, 1)', dropout);
}

/**
 * TrainOptions.distill's targets for `trees`, whose table rows have the labels
 * `label`: (1 − weight)·onehot(gold) + weight·(the teachers' mean
 * probabilities) at labelled nodes, zero at the others (which have no loss).
 * Each teacher reads the trees with its own vocabulary.
 */
function distillationTargets(distill: NonNullable<TrainOptions['distill']>, trees: readonly TreeNode[], label: Int32Array, classes: number): Float32Array {
  const { weight, teachers } = distill;
  if (!(weight >= 0 && weight <= 1)) throw new RangeError(`the distillation weight must be in [0, 1], got ${weight}`);
  if (teachers.length === 0) throw new RangeError('distillation needs at least one teacher model');
  const models = teachers.map((file) => loadModel(file));
  if (ensembleClasses(models) !== classes) throw new RangeError(`the teacher models have ${models[0].config.classes} classes, the model being trained ${classes}`);
  const mean = ensembleProbabilities(models, trees);
  const target = new Float32Array(label.length * classes);
  for (let i = 0; i < label.length; i++) {
    if (label[i] < 0) continue;
    for (let c = 0; c < classes; c++) target[i * classes + c] = weight * mean[i * classes + c] + (c === label[i] ? 1 - weight : 0);
  }
  return target;
}

/** The dropout mask seed of one shard: a 32-bit hash of where it is in the run. */
function dropoutSeed(seed: number, epoch: number, batch: number, shard: number): number {
  let h = 0x811c9dc5;
  for (const x of [seed >>> 0, Math.floor(seed / 2 ** 32), epoch, batch, shard]) h = Math.imul(h ^ x, 0x01000193) >>> 0;
  return h;
}

/**
 * The update the pool applies for `model` under AdaGrad state `adagrad`:
 * the groups before L whole, every batch, with their L2 weights (the biases
 * b and bs unregularised), and only the rows of L a batch touched, with λ_L.
 */
export function updateConfig(model: Model, lambda: Regularisation, adagrad: Pick<AdaGrad, 'history' | 'epsilon'>): UpdateConfig {
  const { layout } = model;
  const lambdaOf = { V: lambda.V, W: lambda.W, b: 0, Ws: lambda.Ws, bs: 0 } as const;
  return {
    history: adagrad.history,
    epsilon: adagrad.epsilon,
    dense: (['V', 'W', 'b', 'Ws', 'bs'] as const).map((name) => ({
      start: layout.offsets[name],
      end: layout.offsets[name] + layout.count(name),
      lambda: lambdaOf[name],
    })),
    rows: { offset: layout.offsets.L, dim: model.config.dim, lambda: lambda.L },
  };
}

/**
 * Cuts a minibatch into `shards` shards of near-equal work, `weight(tree)`
 * being a tree's work (the trainer passes its node count): the longest trees
 * first, each to the lightest shard so far (ties to the lower shard), then
 * every shard back in batch order. Equal shards keep the workers busy until
 * the same moment: over a shuffled SST epoch (batch 27, 4 shards, 2 workers
 * taking them round-robin, as the pool did until session 7) the busier
 * worker had 8.1 % more nodes than the mean with equal tree counts per
 * shard, 0.8 % with this split.
 * Depends only on the batch, never on the thread count, like everything
 * that fixes the arithmetic.
 */
export function splitIntoShards(trees: Int32Array, shards: number, weight: (tree: number) => number = () => 1): Int32Array[] {
  const byWeight = Array.from(trees.keys()).sort((a, b) => weight(trees[b]) - weight(trees[a]) || a - b);
  const load = new Float64Array(shards);
  const members: number[][] = Array.from({ length: shards }, () => []);
  for (const i of byWeight) {
    let lightest = 0;
    for (let s = 1; s < shards; s++) if (load[s] < load[lightest]) lightest = s;
    load[lightest] += weight(trees[i]);
    members[lightest].push(i);
  }
  return members.map((m) => Int32Array.from(m.sort((a, b) => a - b), (i) => trees[i]));
}

function writeCheckpoint(
  file: string,
  model: Model,
  history: Float32Array,
  best: Float32Array | undefined,
  averageSum: Float64Array | undefined,
  targets: Float32Array | undefined,
  options: TrainOptions,
  state: TrainerState,
): void {
  const tensors: Parameters<typeof encodeSafetensors>[0] = {
    params: { dtype: 'F32', shape: [model.params.length], data: model.params },
    history: { dtype: 'F32', shape: [history.length], data: history },
  };
  if (best) tensors.best = { dtype: 'F32', shape: [best.length], data: best };
  if (averageSum) tensors.averageSum = { dtype: 'F64', shape: [averageSum.length], data: averageSum };
  if (targets) tensors.targets = { dtype: 'F32', shape: [targets.length], data: targets };
  const metadata = {
    format: CHECKPOINT_FORMAT,
    vocab: JSON.stringify(model.vocab.words),
    config: JSON.stringify(model.config),
    options: JSON.stringify(options),
    state: JSON.stringify(state),
  };
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}

/** The settings a checkpoint's run was started with (to regenerate its data, say). */
export function checkpointOptions(file: string): TrainOptions {
  return readCheckpoint(file).options;
}

function readCheckpoint(file: string): {
  model: Model;
  history: Float32Array;
  best?: Float32Array;
  averageSum?: Float64Array;
  targets?: Float32Array;
  options: TrainOptions;
  state: TrainerState;
} {
  const { tensors, metadata } = decodeSafetensors(readFileNamed(file, 'checkpoint'), file);
  if (metadata.format !== CHECKPOINT_FORMAT) throw new Error(`${file}: not an rntn checkpoint (format ${JSON.stringify(metadata.format)}, expected ${CHECKPOINT_FORMAT})`);
  const parse = <T>(key: string): T => {
    try {
      return JSON.parse(metadata[key]) as T;
    } catch {
      throw new Error(`${file}: checkpoint metadata ${JSON.stringify(key)} is missing or not JSON`);
    }
  };
  const vocab = new Vocabulary(parse<string[]>('vocab'));
  const config = parse<Model['config']>('config');
  const tensor = <A extends Float32Array | Float64Array>(name: string, required: boolean, type: new (n: number) => A, dtype: string): A | undefined => {
    const t = tensors.get(name);
    if (!t) {
      if (required) throw new Error(`${file}: checkpoint has no tensor ${JSON.stringify(name)}`);
      return undefined;
    }
    if (!(t.data instanceof type)) throw new Error(`${file}: checkpoint tensor ${JSON.stringify(name)} must be ${dtype}`);
    return t.data as A;
  };
  const f32 = (name: string, required: boolean) => tensor(name, required, Float32Array, 'F32');
  const params = f32('params', true)!;
  let model: Model;
  try {
    model = new Model(config, vocab, params);
  } catch (e) {
    // A damaged config (an unknown leaf, a dim that does not fit params): say which file.
    throw new Error(`${file}: checkpoint config ${JSON.stringify(config)} does not fit: ${(e as Error).message}`, { cause: e });
  }
  const history = f32('history', true)!;
  const best = f32('best', false);
  const averageSum = tensor('averageSum', false, Float64Array, 'F64');
  const stored = f32('targets', false);
  if (stored) {
    const bad = stored.findIndex((x) => !(Number.isFinite(x) && x >= 0));
    if (bad >= 0) throw new Error(`${file}: checkpoint tensor targets holds ${stored[bad]} at index ${bad}, expected a finite value >= 0`);
  }
  for (const [name, t] of [['params', model.params], ['history', history], ['best', best], ['averageSum', averageSum]] as const) {
    if (!t) continue;
    if (t.length !== model.params.length) throw new Error(`${file}: checkpoint tensor ${name} has ${t.length} values, the model ${model.params.length}`);
    const bad = t.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new Error(`${file}: checkpoint tensor ${name} holds a non-finite value at index ${bad}`);
  }
  const state = parse<TrainerState>('state');
  if ((averageSum !== undefined) !== (state.averaged !== undefined && state.averaged > 0)) {
    throw new Error(`${file}: checkpoint state averages ${state.averaged ?? 0} epochs but ${averageSum ? 'has' : 'lacks'} the tensor averageSum`);
  }
  return { model, history, best, averageSum, targets: stored, options: parse<TrainOptions>('options'), state };
}
