#!/usr/bin/env node
/**
 * The `rntn` command. Each subcommand is a thin layer over the library API:
 * parsing flags, reading files and printing; the work happens in the modules
 * it imports. Errors go to stderr as `rntn <command>: message` with exit
 * status 1; only success exits 0.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'node:fs';
import { SingleBar } from 'cli-progress';
import { evaluateEnsemble, formatMetrics, pct, type Metrics } from './evaluate';
import { gradientCheck, lossAndGradient, type GroupCheck } from './gradient';
import { Model, TENSOR_NAMES, type LeafActivation } from './model';
import { loadModel, saveModel } from './model-file';
import { blasInfo, describeBlas } from './native';
import { binarize, formatPredictionJson, formatPredictionPtb, predictEnsemble, tokenize } from './predict';
import { Random } from './random';
import { checkWritable, readFileNamed, writeFileAtomic } from './files';
import { encodeSafetensors, type TensorInput } from './safetensors';
import { randomTrees, syntheticSplits } from './synthetic';
import { checkpointOptions, DEFAULT_DISTILL_WEIGHT, DEFAULT_TRAIN_OPTIONS, train, type EpochRecord, type Progress, type TrainOptions, type TrainResult } from './train';
import { readTrees, type TreeNode } from './tree';
import { Vocabulary } from './vocab';

/** Commander's collector for a repeatable option: every value given, in order. */
function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/**
 * A flag's value as a number. Number() reads an empty or blank string as 0,
 * so `--lr-drop-epoch ""` (an unset shell variable) would silently turn the
 * drop off: blank values are refused here, once, for every numeric flag.
 */
function numeric(value: string, expected: string): number {
  if (value.trim() === '') throw new InvalidArgumentError(`${expected}, got an empty value`);
  return Number(value);
}

function positiveInt(value: string): number {
  const n = numeric(value, 'expected a positive integer');
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function positiveNumber(value: string): number {
  const n = numeric(value, 'expected a positive number');
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

function nonNegativeNumber(value: string): number {
  const n = numeric(value, 'expected a non-negative number');
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a non-negative number');
  return n;
}

function dropoutRate(value: string): number {
  const n = numeric(value, 'expected a rate in [0, 1)');
  if (!(n >= 0 && n < 1)) throw new InvalidArgumentError('expected a rate in [0, 1)');
  return n;
}

function fraction(value: string): number {
  const n = numeric(value, 'expected a number in [0, 1]');
  if (!(n >= 0 && n <= 1)) throw new InvalidArgumentError('expected a number in [0, 1]');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = numeric(value, 'expected a non-negative integer');
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

/**
 * The trees of a file a command needs trees from. An empty file (or one of
 * blank lines) is almost always the wrong file: the library treats no dev
 * trees as no dev set and scores no trees as 0 of 0, so the command line
 * says so instead of training without selection or printing 0 %.
 */
function readTreeFile(file: string, options?: Parameters<typeof readTrees>[1]): TreeNode[] {
  const trees = readTrees(file, options);
  if (trees.length === 0) throw new Error(`${file}: no trees (expected one PTB tree per line)`);
  return trees;
}

/**
 * Checks a command's output files before its work: each must be writable
 * (checkWritable) and none may be one of its inputs — `rntn train --train
 * data.txt --out data.txt` would replace the treebank with a model, `--log`
 * would append JSON to it. Outputs are [flag, file, what it is], inputs
 * [flag, file]; absent (undefined) files are skipped.
 */
function checkOutputs(outputs: [string, string | undefined, string][], inputs: [string, string | undefined][]): void {
  const real = (file: string) => {
    try {
      return fs.realpathSync(file);
    } catch {
      return undefined; // not there (yet): it cannot be an existing input
    }
  };
  for (const [flag, file, what] of outputs) {
    if (file === undefined) continue;
    const target = real(file);
    const input = target === undefined ? undefined : inputs.find(([, f]) => f !== undefined && real(f) === target);
    if (input) throw new Error(`${flag} ${file} is also ${input[0]}: writing it would destroy an input`);
    checkWritable(file, what);
  }
}

/** Runs a command body, turning any error into a message on stderr and exit status 1. */
function action<A extends unknown[]>(name: string, body: (...args: A) => void | Promise<void>) {
  return async (...args: A) => {
    try {
      await body(...args);
    } catch (e) {
      process.stderr.write(`rntn ${name}: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    }
  };
}

/** The largest finite-difference error `gradcheck` accepts (float64). */
const GRADCHECK_TOLERANCE = 1e-6;

export function buildProgram(): Command {
  const program = new Command('rntn')
    .description('Recursive Neural Tensor Network (Socher et al. 2013) on an OpenBLAS core')
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  program
    .command('grad')
    .description('write the summed, unregularised loss gradient over a treebank (safetensors, tensor names as in the model)')
    .requiredOption('--model <file>', 'model file (safetensors)')
    .requiredOption('--trees <file>', 'trees in PTB form, one per line')
    .requiredOption('--out <file>', 'gradient file to write (safetensors; the loss is metadata "loss")')
    .option('--precision <p>', 'float32 (as training computes it) or float64', 'float32')
    .action(
      action('grad', (opts: { model: string; trees: string; out: string; precision: string }) => {
        if (opts.precision !== 'float32' && opts.precision !== 'float64') {
          throw new Error(`--precision must be float32 or float64, got ${JSON.stringify(opts.precision)}`);
        }
        checkOutputs([['--out', opts.out, 'the gradient']], [['--model', opts.model], ['--trees', opts.trees]]);
        const model = loadModel(opts.model);
        const trees = readTreeFile(opts.trees, { classes: model.config.classes });
        const result = opts.precision === 'float64' ? lossAndGradient(model, trees, 'float64') : lossAndGradient(model, trees);
        const tensors: Record<string, TensorInput> = {};
        for (const name of TENSOR_NAMES) {
          tensors[name] = { dtype: opts.precision === 'float64' ? 'F64' : 'F32', shape: [...model.layout.shapes[name]], data: result.tensors[name] };
        }
        const metadata = { loss: String(result.loss), trees: String(trees.length), format: 'rntn-gradient/1' };
        writeFileAtomic(opts.out, encodeSafetensors(tensors, metadata));
        process.stdout.write(`loss ${result.loss} over ${trees.length} trees; gradient written to ${opts.out}\n`);
      }),
    );

  program
    .command('gradcheck')
    .description('check the analytic gradient against finite differences in float64, for every parameter group')
    .option('--model <file>', 'model to check at (default: random models on random trees)')
    .option('--trees <file>', 'trees to check on (needed with --model)')
    .option('--max-trees <n>', 'use only the first n trees', positiveInt, 10)
    .option('--samples <n>', 'coordinates checked per parameter group', positiveInt, 200)
    .option('--dim <n>', 'hidden size of the random models', positiveInt, 5)
    .option('--seed <n>', 'seed for the random models, trees and coordinates', nonNegativeInt, 1)
    .option('--step <h>', 'finite-difference step', positiveNumber, 1e-3)
    .option('--json', 'print the result as one JSON object')
    .action(
      action('gradcheck', (opts: { model?: string; trees?: string; maxTrees: number; samples: number; dim: number; seed: number; step: number; json?: boolean }) => {
        if ((opts.model === undefined) !== (opts.trees === undefined)) throw new Error('--model and --trees go together');
        const runs: { name: string; model: Model; trees: TreeNode[] }[] = [];
        // `!== undefined`, not truthiness, for file flags here and below: `--trees ''` is a missing file, not no flag.
        if (opts.model !== undefined && opts.trees !== undefined) {
          const model = loadModel(opts.model);
          runs.push({ name: opts.model, model, trees: readTreeFile(opts.trees, { classes: model.config.classes }).slice(0, opts.maxTrees) });
        } else {
          for (const leaf of ['identity', 'tanh'] as LeafActivation[]) {
            const { model, trees } = randomProblem(opts.dim, leaf, opts.seed, opts.maxTrees);
            runs.push({ name: `random d=${opts.dim} leaf=${leaf}`, model, trees });
          }
        }
        const results = runs.map((r) => ({ name: r.name, groups: gradientCheck(r.model, r.trees, { samples: opts.samples, seed: opts.seed, step: opts.step }) }));
        const worst = Math.max(...results.flatMap((r) => r.groups.map((g) => g.relativeError)));
        const passed = worst <= GRADCHECK_TOLERANCE;
        if (opts.json) {
          process.stdout.write(JSON.stringify({ passed, tolerance: GRADCHECK_TOLERANCE, runs: results }) + '\n');
        } else {
          process.stdout.write(`${describeBlas()}\n`);
          for (const r of results) {
            process.stdout.write(`${r.name}\n`);
            for (const g of r.groups) process.stdout.write(formatCheck(g));
          }
          process.stdout.write(`${passed ? 'PASSED' : 'FAILED'}: worst relative error ${worst.toExponential(2)} (tolerance ${GRADCHECK_TOLERANCE})\n`);
        }
        if (!passed) process.exitCode = 1;
      }),
    );
  const d = DEFAULT_TRAIN_OPTIONS;
  program
    .command('train')
    .description('train a model with AdaGrad; with --dev, keep the epoch model with the best dev root 5-class accuracy')
    .option('--train <file>', 'training trees in PTB form (default: a small generated sentiment treebank, to see it learn)')
    .option('--dev <file>', 'dev trees for model selection')
    .option('--out <file>', 'model file to write', 'model.safetensors')
    .option('--dim <n>', 'hidden size d', positiveInt, d.dim)
    .option('--batch <n>', 'trees per minibatch', positiveInt, d.batchSize)
    .option('--epochs <n>', 'maximum number of epochs', positiveInt, d.epochs)
    .option('--max-minutes <m>', 'stop after this much training time', positiveNumber)
    .option('--lr <rate>', 'AdaGrad learning rate', positiveNumber, d.learningRate)
    .option('--lr-drop-epoch <n>', 'from this epoch on, multiply the learning rate by --lr-drop-factor (0: never)', nonNegativeInt, d.learningRateDrop?.epoch ?? 0)
    .option('--lr-drop-factor <x>', 'the factor --lr-drop-epoch applies', nonNegativeNumber, d.learningRateDrop?.factor ?? 0.1)
    .option('--adagrad-reset <n>', 'reset AdaGrad history every n epochs (0: never)', nonNegativeInt, d.adagradResetEpochs)
    .option('--lambda-w <x>', 'L2 weight of W', nonNegativeNumber, d.lambda.W)
    .option('--lambda-v <x>', 'L2 weight of V', nonNegativeNumber, d.lambda.V)
    .option('--lambda-ws <x>', 'L2 weight of Ws', nonNegativeNumber, d.lambda.Ws)
    .option('--lambda-l <x>', 'L2 weight of the word vectors', nonNegativeNumber, d.lambda.L)
    .option('--dropout <rate>', "dropout on the classifier's input while training (0: none)", dropoutRate, d.dropout)
    .option('--root-weight <w>', "loss weight of each sentence's root (1: every node alike, as in the paper)", nonNegativeNumber, d.rootWeight)
    .option('--polarity-weight <w>', "weight of a loss term on each non-neutral node's side, negative or positive (0: none)", nonNegativeNumber, d.polarityWeight ?? 0)
    .option('--root-polarity-weight <w>', "that term's weight at each sentence's root, instead of --polarity-weight's", nonNegativeNumber, d.rootPolarityWeight ?? d.polarityWeight ?? 0)
    .option('--average-from <n>', 'from this epoch on, score, keep and write the mean of the parameters since it (0: never)', nonNegativeInt, d.averageFrom ?? 0)
    .option('--teacher <model>', "distil: each node's loss aims at a mix of its gold label and this model's class probabilities; repeat it for an ensemble's mean", collect)
    .option('--distill-weight <w>', "the teachers' share of each node's target (with --teacher)", fraction, DEFAULT_DISTILL_WEIGHT)
    .addOption(new Option('--leaf <activation>', 'leaf activation: identity (the paper) or tanh (CoreNLP)').choices(['identity', 'tanh']).default(d.leaf))
    .option('--seed <n>', 'random seed (initialisation and shuffling)', nonNegativeInt, d.seed)
    .option('--min-count <n>', 'words seen fewer times in training share the *UNK* vector', positiveInt, d.minCount)
    .option('--eval-every <n>', 'evaluate on dev every n epochs', positiveInt, d.evalEvery)
    .option('--patience <k>', 'stop after k dev evaluations without improvement', positiveInt)
    .option('--checkpoint-dir <dir>', 'write checkpoints (atomically) into this directory')
    .option('--checkpoint-every <n>', 'epochs between checkpoints', positiveInt, d.checkpointEvery)
    .option('--resume <checkpoint>', 'continue from a checkpoint (its settings win, except the stopping rules)')
    .option('--log <file>', 'append one JSON object per epoch to this file')
    .option('--threads <n>', 'worker threads (default: available cores); the result does not depend on it', positiveInt, d.threads)
    .option('--shards <n>', 'gradient shards per minibatch: fixes the arithmetic and caps useful threads (2 trains fastest on 2 cores)', positiveInt, d.shards)
    .action(
      action('train', async (opts: TrainFlags, command: Command) => {
        const resumed = opts.resume !== undefined ? checkpointOptions(opts.resume) : undefined;
        let trainTrees: TreeNode[];
        let devTrees: TreeNode[] | undefined;
        if (opts.train !== undefined) {
          trainTrees = readTreeFile(opts.train);
          devTrees = opts.dev !== undefined ? readTreeFile(opts.dev) : undefined;
        } else {
          if (opts.dev !== undefined) throw new Error('--dev needs --train');
          // A resumed run must continue on the treebank it started on, generated from its own seed.
          const splits = syntheticSplits(resumed?.seed ?? opts.seed);
          trainTrees = splits.train;
          devTrees = splits.dev;
          process.stderr.write(`no --train given: training on the generated sentiment treebank (${splits.train.length} train, ${splits.dev.length} dev trees)\n`);
        }
        // Before training, not after it: a run of hours must not end in a failed write.
        const inputs: [string, string | undefined][] = [['--train', opts.train], ['--dev', opts.dev], ['--resume', opts.resume], ...(opts.teacher ?? []).map((t): [string, string] => ['--teacher', t])];
        checkOutputs(
          [
            ['--out', opts.out, 'the model'],
            ['--log', opts.log, 'the training log'],
          ],
          inputs,
        );
        const options: TrainOptions = {
          ...DEFAULT_TRAIN_OPTIONS,
          dim: opts.dim,
          leaf: opts.leaf,
          batchSize: opts.batch,
          epochs: opts.epochs,
          maxMinutes: opts.maxMinutes,
          learningRate: opts.lr,
          learningRateDrop: opts.lrDropEpoch === 0 ? undefined : { epoch: opts.lrDropEpoch, factor: opts.lrDropFactor },
          adagradResetEpochs: opts.adagradReset,
          lambda: { W: opts.lambdaW, V: opts.lambdaV, Ws: opts.lambdaWs, L: opts.lambdaL },
          dropout: opts.dropout,
          rootWeight: opts.rootWeight,
          averageFrom: opts.averageFrom,
          // Absent when 0, like distill: the model file records the options of the loss that was trained.
          polarityWeight: opts.polarityWeight > 0 ? opts.polarityWeight : undefined,
          rootPolarityWeight: opts.rootPolarityWeight !== opts.polarityWeight ? opts.rootPolarityWeight : undefined,
          distill: opts.teacher ? { weight: opts.distillWeight, teachers: opts.teacher } : undefined,
          seed: opts.seed,
          minCount: opts.minCount,
          evalEvery: opts.evalEvery,
          patience: opts.patience,
          checkpointDir: opts.checkpointDir,
          checkpointEvery: opts.checkpointEvery,
          threads: opts.threads,
          shards: opts.shards,
        };
        const given = (flag: string) => command.getOptionValueSource(flag) === 'cli';
        // Both count dev evaluations: without a dev set they would do nothing, silently.
        if (devTrees === undefined) {
          for (const [flag, name] of [['patience', '--patience'], ['evalEvery', '--eval-every']]) {
            if (given(flag)) throw new Error(`${name} counts dev evaluations: it needs --dev`);
          }
        }
        if (resumed) {
          // A user who adds --resume to the command that started the run repeats its flags: only those
          // that differ from the run's own are news.
          // A setting this command line does not make (a factor with no drop, a weight with no teacher) is not news either.
          const ignored = RESUMED_SETTINGS.filter(([flag, of]) => given(flag) && of(options) !== undefined && JSON.stringify(of(options)) !== JSON.stringify(of(resumed))).map(
            ([flag, of]) => `${command.options.find((o) => o.attributeName() === flag)!.long} ${JSON.stringify(of(options))} (the run's: ${JSON.stringify(of(resumed))})`,
          );
          if (ignored.length > 0) process.stderr.write(`note: a resumed run keeps the settings it started with; ignoring ${ignored.join(', ')}\n`);
        }
        // The pool sets OpenBLAS to one thread while it runs (src/pool.ts): a user's OPENBLAS_NUM_THREADS shows here but does not train.
        process.stderr.write(`${describeBlas()}${blasInfo().threads !== 1 ? ', 1 in each worker while training' : ''}\n`);
        // The pool starts no more workers than a minibatch has shards (src/pool.ts). On a
        // many-core server the default threads (all cores) exceed the default shards, and
        // a user should learn it before a long run, not from a profiler. A resumed run
        // takes its shards from the checkpoint, whose first run said this already.
        if (opts.resume === undefined && opts.threads > opts.shards) {
          process.stderr.write(
            `note: training on ${opts.shards} worker threads, not ${opts.threads}: a minibatch's ${opts.shards} shards (--shards) are ` +
              `the most that threads can share; more shards let more threads help (the same seed then gives another model)\n`,
          );
        }
        // Where Ctrl-C or --max-minutes leaves a checkpoint when the run writes none of its own: beside the model.
        const stopCheckpointDir = opts.checkpointDir === undefined && opts.resume === undefined ? `${opts.out}.checkpoint` : undefined;
        const report = progressReporter(opts.epochs, opts.maxMinutes);
        const controller = new AbortController();
        const onSigint = () => {
          report.stop();
          process.stderr.write('interrupted: stopping after the batches in flight and writing a checkpoint\n');
          controller.abort();
        };
        process.once('SIGINT', onSigint);
        try {
          const result = await train(
            trainTrees,
            devTrees,
            options,
            {
              signal: controller.signal,
              stopCheckpointDir,
              onProgress: report.progress,
              onEpoch: (record) => {
                report.epoch(record);
                if (opts.log !== undefined) fs.appendFileSync(opts.log, JSON.stringify(record) + '\n');
              },
            },
            opts.resume,
          );
          report.stop();
          // The settings that shape the model; not the thread count or the checkpoint
          // directory, which do not, so equal models stay byte-identical files.
          const { threads: _threads, checkpointDir: _dir, ...settings } = result.options;
          saveModel(result.model, opts.out, { training: JSON.stringify({ ...settings, epochsRun: result.epochs, stoppedBy: result.stoppedBy }) });
          const best = result.bestDev;
          process.stderr.write(
            `${STOP_REASON[result.stoppedBy]} after ${result.epochs} epochs; model written to ${opts.out}` +
              (best ? `: dev ${devFigures(best)}` : '') +
              (result.stoppedBy === 'interrupted' && result.checkpoint ? `; to continue: --resume ${result.checkpoint}` : '') +
              // The budget counts the whole run's training time, resumes included: the same --max-minutes would stop at once.
              (result.stoppedBy === 'time' && result.checkpoint ? `; to continue: --resume ${result.checkpoint} with a larger --max-minutes` : '') +
              '\n',
          );
          if (result.checkpointError) {
            process.stderr.write(`rntn train: the model is written, but its checkpoint could not be: ${result.checkpointError.message}\n`);
            process.exitCode = 1;
          }
          if (result.stoppedBy === 'interrupted') process.exitCode = 130;
        } finally {
          report.stop();
          process.removeListener('SIGINT', onSigint);
        }
      }),
    );

  program
    .command('eval')
    .description('accuracy (5-class and binary, all nodes and roots), loss, confusion matrices and per-class P/R/F1')
    .requiredOption('--model <file>', 'model file; repeat it to score an ensemble (the mean of the models\' class probabilities)', collect)
    .requiredOption('--trees <file>', 'labelled trees in PTB form')
    .option('--json', 'print one JSON object')
    .action(
      action('eval', (opts: { model: string[]; trees: string; json?: boolean }) => {
        const models = opts.model.map((file) => loadModel(file));
        const trees = readTreeFile(opts.trees, { classes: models[0].config.classes });
        const metrics = evaluateEnsemble(models, trees);
        const title = models.length === 1 ? opts.trees : `${opts.trees}, ensemble of ${models.length} models`;
        process.stdout.write(opts.json ? JSON.stringify(metrics) + '\n' : formatMetrics(metrics, title) + '\n');
      }),
    );
  program
    .command('predict')
    .description('predict the sentiment of every node: PTB trees (best), or plain text binarised right-branching (a fallback)')
    .requiredOption('--model <file>', 'model file; repeat it to predict with an ensemble (the mean of the models\' class probabilities)', collect)
    .option('--trees <file>', 'trees in PTB form (gold labels, if present, are kept in JSON output)')
    .option('--text <file>', 'plain text, one tokenised sentence per line (no parse: right-branching fallback)')
    .addOption(new Option('--format <format>', 'output format').choices(['ptb', 'json']).default('ptb'))
    .action(
      action('predict', (opts: { model: string[]; trees?: string; text?: string; format: 'ptb' | 'json' }) => {
        if ((opts.trees === undefined) === (opts.text === undefined)) throw new Error('give exactly one of --trees and --text');
        const models = opts.model.map((file) => loadModel(file));
        let trees: TreeNode[];
        if (opts.trees !== undefined) {
          // A filter: no trees in, no predictions out (readTreeFile would refuse an empty file).
          trees = readTrees(opts.trees, { classes: models[0].config.classes });
        } else {
          trees = readFileNamed(opts.text!, 'text')
            .toString('utf8')
            .split('\n')
            .map(tokenize)
            .filter((tokens) => tokens.length > 0)
            .map(binarize);
        }
        const out: string[] = [];
        for (const p of predictEnsemble(models, trees)) out.push(opts.format === 'json' ? formatPredictionJson(p, opts.trees !== undefined) : formatPredictionPtb(p));
        process.stdout.write(out.length > 0 ? out.join('\n') + '\n' : '');
      }),
    );
  return program;
}

const STOP_REASON: Record<TrainResult['stoppedBy'], string> = {
  epochs: 'finished',
  time: 'stopped at the time budget',
  patience: 'stopped early (no dev improvement)',
  interrupted: 'interrupted',
};

interface TrainFlags {
  train?: string;
  dev?: string;
  out: string;
  dim: number;
  batch: number;
  epochs: number;
  maxMinutes?: number;
  lr: number;
  lrDropEpoch: number;
  lrDropFactor: number;
  adagradReset: number;
  lambdaW: number;
  lambdaV: number;
  lambdaWs: number;
  lambdaL: number;
  dropout: number;
  rootWeight: number;
  averageFrom: number;
  polarityWeight: number;
  rootPolarityWeight: number;
  teacher?: string[];
  distillWeight: number;
  leaf: LeafActivation;
  seed: number;
  minCount: number;
  evalEvery: number;
  patience?: number;
  checkpointDir?: string;
  checkpointEvery: number;
  resume?: string;
  log?: string;
  threads: number;
  shards: number;
}

/**
 * The flags whose settings a resumed run takes from its checkpoint (train():
 * only the stopping rules, the threads and the checkpoint directory come
 * from the command line), each with the setting it makes.
 */
const RESUMED_SETTINGS: [flag: keyof TrainFlags, of: (o: TrainOptions) => unknown][] = [
  ['dim', (o) => o.dim],
  ['batch', (o) => o.batchSize],
  ['lr', (o) => o.learningRate],
  ['lrDropEpoch', (o) => o.learningRateDrop?.epoch ?? 0],
  ['lrDropFactor', (o) => o.learningRateDrop?.factor],
  ['adagradReset', (o) => o.adagradResetEpochs],
  ['lambdaW', (o) => o.lambda.W],
  ['lambdaV', (o) => o.lambda.V],
  ['lambdaWs', (o) => o.lambda.Ws],
  ['lambdaL', (o) => o.lambda.L],
  ['dropout', (o) => o.dropout ?? 0],
  ['rootWeight', (o) => o.rootWeight ?? 1],
  ['polarityWeight', (o) => o.polarityWeight ?? 0],
  ['rootPolarityWeight', (o) => o.rootPolarityWeight ?? o.polarityWeight ?? 0],
  ['averageFrom', (o) => o.averageFrom ?? 0],
  ['teacher', (o) => o.distill?.teachers],
  ['distillWeight', (o) => o.distill?.weight],
  ['leaf', (o) => o.leaf],
  ['seed', (o) => o.seed],
  ['minCount', (o) => o.minCount],
  ['evalEvery', (o) => o.evalEvery],
  ['checkpointEvery', (o) => o.checkpointEvery],
  ['shards', (o) => o.shards],
];

/** The dev figures the training log lines print. */
function devFigures(m: Pick<Metrics, 'rootFine' | 'allFine' | 'rootBinary'>): string {
  return `root ${pct(m.rootFine)}, all ${pct(m.allFine)}, root binary ${pct(m.rootBinary)}`;
}

/**
 * Training progress on stderr: a live bar (epoch, sentences/s, loss, ETA)
 * when stderr is a terminal, one plain line per epoch when it is not (logs,
 * CI), so that redirected output is not full of carriage returns.
 */
function progressReporter(epochs: number, maxMinutes?: number) {
  const tty = process.stderr.isTTY === true;
  const bar = tty
    ? new SingleBar({
        stream: process.stderr,
        // The bar spans the whole run, so the ETA is for training, not the epoch; a time
        // budget may end the run first, so what is left of it shows beside the ETA.
        format:
          'epoch {epoch}/{epochs} [{bar}] {percentage}% | {speed} sent/s | loss {loss} | ETA {eta_formatted}' +
          (maxMinutes !== undefined ? ' | budget left {budget}' : ''),
        hideCursor: true,
        clearOnComplete: true,
      })
    : undefined;
  let started = false;
  // Which model the dev figures are of, once averaging has begun (TrainOptions.averageFrom).
  const averagedModel = (r: EpochRecord) => {
    if (!r.averaged) return '';
    return r.averaged > 1 ? ` (mean of epochs ${r.epoch - r.averaged + 1}–${r.epoch})` : ' (averaging from here on)';
  };
  const line = (r: EpochRecord) =>
    `epoch ${r.epoch}: loss ${r.loss.toFixed(4)}, ${r.sentencesPerSecond.toFixed(0)} sent/s, ${r.seconds.toFixed(1)} s` +
    (r.dev
      ? `; dev${averagedModel(r)} ${devFigures(r.dev)}${r.best ? ' (best)' : ''}`
      : '');
  return {
    progress(p: Progress) {
      if (!bar) return;
      const left = Math.max(0, Math.round((maxMinutes ?? 0) * 60 - p.seconds));
      const budget = `${Math.floor(left / 60)}m${String(left % 60).padStart(2, '0')}s`;
      const payload = { epoch: p.epoch, epochs, speed: p.sentencesPerSecond.toFixed(0), loss: p.loss.toFixed(4), budget };
      const done = (p.epoch - 1) * p.batches + p.batch;
      if (!started) {
        bar.start(epochs * p.batches, done, payload);
        started = true;
      } else {
        bar.update(done, payload);
      }
    },
    epoch(r: EpochRecord) {
      // The bar (cleared on stop) restarts at the next batch, so epoch lines scroll above it.
      if (bar && started) {
        bar.stop();
        started = false;
      }
      process.stderr.write(line(r) + '\n');
    },
    stop() {
      if (bar && started) bar.stop();
      started = false;
    },
  };
}

function formatCheck(g: GroupCheck): string {
  return `  ${g.group.padEnd(3)} ${String(g.checked).padStart(5)} coordinates  relative error ${g.relativeError.toExponential(2)}  max |Δ| ${g.maxAbsoluteError.toExponential(2)}\n`;
}

/** A perturbed random model and random trees: every term of the gradient is exercised. */
function randomProblem(dim: number, leaf: LeafActivation, seed: number, count: number): { model: Model; trees: TreeNode[] } {
  const words = ['*UNK*', 'good', 'bad', 'not', 'very', 'plot', 'but', 'fun'];
  // Its own stream for the perturbation (not the initialisation's seed, which
  // would just rescale the initial values). The perturbation shrinks with d so
  // pre-activations stay O(1): at d = 25 a fixed ±0.3 drives |z| to ~11,
  // where the loss is so curved that no finite-difference step is accurate.
  const rng = new Random(seed + 1000);
  const model = Model.create(new Vocabulary(words), { dim, leaf, seed });
  for (let i = 0; i < model.params.length; i++) model.params[i] += rng.symmetric(1.5 / dim);
  return { model, trees: randomTrees(seed + 2000, count, words, 5, 10) };
}

if (require.main === module) {
  // A reader that stops early (`rntn predict … | head`) closes the pipe: end quietly, as Unix tools do, not with an EPIPE stack trace.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(0);
  });
  buildProgram().parseAsync(process.argv);
}
