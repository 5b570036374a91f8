#!/usr/bin/env node
/**
 * The `rntn` command. Each subcommand is a thin layer over the library API:
 * parsing flags, reading files and printing; the work happens in the modules
 * it imports. Errors go to stderr as `rntn <command>: message` with exit
 * status 1; only success exits 0.
 */
import { Command, InvalidArgumentError } from 'commander';
import { gradientCheck, lossAndGradient, type GroupCheck } from './gradient';
import { Model, TENSOR_NAMES, type LeafActivation } from './model';
import { loadModel } from './model-file';
import { describeBlas } from './native';
import { Random } from './random';
import { encodeSafetensors, writeFileAtomic, type TensorInput } from './safetensors';
import { readTrees, type TreeNode } from './tree';
import { Vocabulary } from './vocab';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
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
        const model = loadModel(opts.model);
        const trees = readTrees(opts.trees, { classes: model.config.classes });
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
        if (opts.model && opts.trees) {
          const model = loadModel(opts.model);
          runs.push({ name: opts.model, model, trees: readTrees(opts.trees, { classes: model.config.classes }).slice(0, opts.maxTrees) });
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
  return program;
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
  const build = (n: number): TreeNode => {
    if (n === 1) return { label: rng.int(5), word: words[rng.int(words.length)] };
    const split = 1 + rng.int(n - 1);
    return { label: rng.int(5), left: build(split), right: build(n - split) };
  };
  return { model, trees: Array.from({ length: count }, () => build(1 + rng.int(10))) };
}

if (require.main === module) {
  buildProgram().parseAsync(process.argv);
}
