/**
 * Loads the native core and decides how OpenBLAS runs before it loads.
 *
 * OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS once, when the
 * shared library is loaded, which happens when the addon is required. So this
 * module sets them (only when the user has not) just before `node-gyp-build`
 * loads the addon, then checks that the kernels it got compute correct GEMMs.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isMainThread } from 'node:worker_threads';
import type { Model } from './model';

/** Model dimensions as the native core takes them. */
export interface NativeDims {
  dim: number;
  classes: number;
  vocab: number;
  leafTanh: boolean;
}

/**
 * A compiled minibatch (see compileBatch in ./batch): level 0 holds the leaves,
 * level l ≥ 1 the internal nodes whose children lie in earlier levels.
 */
export interface Schedule {
  left: Int32Array;
  right: Int32Array;
  word: Int32Array;
  label: Int32Array;
  levelStart: Int32Array;
  /**
   * Dropout on the classifier's input, for training: each node's activation
   * reaches Ws as m ⊙ x, m_q ∈ {0, 1/(1 − rate)} drawn from (seed, node,
   * unit) by the native core, so the same schedule and seed give the same mask.
   */
  dropout?: { rate: number; seed: number };
  /**
   * The loss weight of each node (default: 1 for all): the loss becomes
   * Σ weight[n]·(−log y_n[label_n]) and its gradient scales alike. Finite and
   * non-negative; the trainer weighs roots with it (`rootWeight`).
   */
  weight?: Float32Array;
  /**
   * The class distribution each node's loss aims at instead of the one-hot of
   * its label (classes values a node, node n's at n·classes): the loss of a
   * labelled node becomes −Σ_i t_i log y_i. Finite and non-negative; the
   * trainer's distillation sets it (docs/training.md).
   */
  target?: Float32Array;
  /**
   * The polarity term's weight β_n at each node (absent, or 0 at a node:
   * none there), for an odd number of classes: a node whose gold label is
   * not the middle (neutral) class adds β_n·weight[n]·(−log Σ y_c over the
   * classes on its label's side), the split the binary metric scores. Finite
   * and non-negative; the trainer sets one weight on roots and one on the
   * other nodes (docs/training.md).
   */
  polarity?: Float32Array;
}

/** Native scratch memory plus the math. One per thread; reuse it across calls. */
export interface NativeWorkspace {
  /** Adds ∂loss/∂params to `grad` and returns the summed loss of the labelled nodes. */
  forwardBackward<T extends Float32Array | Float64Array>(params: T, grad: T, dims: NativeDims, schedule: Schedule): number;
  /**
   * forwardBackward for several schedules on the same parameters (a worker's
   * shards of one minibatch): schedule i's gradient is added to grads[i];
   * returns each schedule's loss. The parameters are prepared once.
   *
   * With `deferTo`, the gradients of V and W are left out, and what they are
   * computed from (3·dim values per internal node: {@link weightGradientInputSize})
   * is written into deferTo[i], so that {@link packedWeightGradient} and
   * Addon.unpackWeightGradients can finish them later, on any thread, with
   * the same bytes.
   *
   * With `prepared`, the parameters are not prepared at all: `prepared` must
   * hold what {@link Addon.prepareParameters} builds from `params` as they
   * are now (the training pool keeps one such buffer for all its workers).
   */
  forwardBackwardShards(
    params: Float32Array,
    grads: Float32Array[],
    dims: NativeDims,
    schedules: Schedule[],
    deferTo?: Float32Array[],
    prepared?: Float32Array,
  ): number[];
  /**
   * Writes part `part` of a schedule's packed weight gradient (∂V's upper
   * triangles and ∂W, packedWeightGradientSize(dim) values) into `packed`,
   * from its deferred inputs (`internal` = its internal nodes). The parts, 0
   * to the addon's `weightGradientParts` − 1, write disjoint blocks:
   * different threads may run them at once.
   */
  packedWeightGradient(inputs: Float32Array, internal: number, packed: Float32Array, dims: NativeDims, part: number): void;
  /** Returns the summed loss; writes classes × nodes probabilities into `probs` when given. */
  forward<T extends Float32Array | Float64Array>(params: T, dims: NativeDims, schedule: Schedule, probs?: T): number;
}

interface Addon {
  Workspace: new () => NativeWorkspace;
  /** How many parts NativeWorkspace.packedWeightGradient splits a schedule's weight gradient into. */
  weightGradientParts: number;
  weightGradientInputSize(dim: number, internal: number): number;
  /** Values of a schedule's packed weight gradient (NativeWorkspace.packedWeightGradient). */
  packedWeightGradientSize(dim: number): number;
  /**
   * Writes ∂V[q] for the units q in [first, end) below dim, and ∂W when unit
   * dim is among them, into `grad`, from the sum of `packed` (packed weight
   * gradients, summed in array order). The units are prepareParameters'.
   */
  unpackWeightGradients(packed: Float32Array[], grad: Float32Array, dims: NativeDims, first: number, end: number): void;
  /** Values of the prepared parameters ([Vs; W] transposed, rntn.h) of a model of hidden size `dim`. */
  preparedSize(dim: number): number;
  /**
   * Builds units [first, end) of the prepared parameters from `params` into
   * `prepared` (preparedSize(dim) values). Unit q < dim comes from V[q]
   * alone, unit dim from W alone: whoever updates a unit can rebuild it.
   */
  prepareParameters(params: Float32Array, dims: NativeDims, prepared: Float32Array, first: number, end: number): void;
  blasInfo(): { corename: string; config: string; threads: number };
  blasThreads(n?: number): number;
  adagradStep(params: Float32Array, history: Float32Array, grads: Float32Array[], ranges: Int32Array, lambdas: Float32Array, scale: number, lr: number, eps: number): boolean;
  /**
   * The AdaGrad step of V and W's units [first, end) (see unpackWeightGradients), their gradient
   * the sum of `packed` in array order: adagradStep on that sum unpacked, byte for byte, with
   * λ_V for V's slices and λ_W for W. Returns false if a gradient value was not finite.
   */
  adagradPackedStep(
    params: Float32Array,
    history: Float32Array,
    packed: Float32Array[],
    dims: NativeDims,
    first: number,
    end: number,
    lambdaV: number,
    lambdaW: number,
    scale: number,
    lr: number,
    eps: number,
  ): boolean;
  gemmSelfTest(): { float32: number; float64: number };
  sgemmRate(n: number, repetitions: number): number;
  tanhMaxRelativeError(): number;
}

export interface BlasInfo {
  /** The kernel family OpenBLAS runs (openblas_get_corename), e.g. "SkylakeX". */
  corename: string;
  /** openblas_get_config(): version and build options. */
  config: string;
  threads: number;
  /** OPENBLAS_CORETYPE as OpenBLAS saw it, and who chose it. */
  coretype: { value: string | undefined; chosenBy: 'user' | 'rntn' | 'openblas' };
}

/**
 * The OPENBLAS_CORETYPE rntn asks for on this CPU, or undefined to leave
 * OpenBLAS's own detection alone.
 *
 * Debian bookworm's OpenBLAS 0.3.21 does not know recent Xeons and falls back
 * to its generic "Prescott" kernels on them, about 5× slower (DESIGN.md). The
 * fix is to name the best kernel family the CPU's instruction set allows.
 * For the float32/float64 GEMMs rntn runs, SkylakeX is OpenBLAS's fastest
 * AVX-512 family (the newer Cooperlake/SapphireRapids names add bf16 paths
 * only), and Haswell its fastest AVX2 family, so naming them never downgrades
 * a CPU OpenBLAS does know. A value the user set — even an empty one, which
 * OpenBLAS also acts on — is never touched.
 */
export function chooseCoretype(cpuFlags: ReadonlySet<string>): string | undefined {
  const avx512 = ['avx512f', 'avx512cd', 'avx512bw', 'avx512dq', 'avx512vl'];
  if (avx512.every((f) => cpuFlags.has(f))) return 'SKYLAKEX';
  if (cpuFlags.has('avx2') && cpuFlags.has('fma')) return 'HASWELL';
  return undefined;
}

/** The instruction-set flags of this CPU (Linux /proc/cpuinfo; empty elsewhere). */
export function cpuFlags(): Set<string> {
  try {
    const info = fs.readFileSync('/proc/cpuinfo', 'latin1');
    const line = /^flags\s*:(.*)$/m.exec(info);
    return new Set(line ? line[1].trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}

/** Largest tolerated GEMM error relative to Σ|aᵢbᵢ| (a correct kernel is near k·eps). */
const GEMM_TOLERANCE = { float32: 1e-5, float64: 1e-13 };

let addon: Addon | undefined;
let coretype: BlasInfo['coretype'] | undefined;

function load(): Addon {
  if (addon) return addon;
  const env = process.env;
  if ('OPENBLAS_CORETYPE' in env) {
    coretype = { value: env.OPENBLAS_CORETYPE, chosenBy: 'user' };
  } else {
    const chosen = chooseCoretype(cpuFlags());
    // In a worker, process.env is a private copy that OpenBLAS cannot see;
    // the choice only takes effect when the main thread loads the addon first
    // (the trainer does). chosenBy says what OpenBLAS was actually told.
    if (chosen && isMainThread) env.OPENBLAS_CORETYPE = chosen;
    coretype = { value: isMainThread ? chosen : undefined, chosenBy: chosen && isMainThread ? 'rntn' : 'openblas' };
  }
  // rntn's GEMMs are narrow (one column per node of a level): OpenBLAS's own
  // threads only add synchronisation there. Parallelism comes from the
  // worker-thread trainer instead. A user's setting wins.
  if (isMainThread && env.OPENBLAS_NUM_THREADS === undefined && env.OMP_NUM_THREADS === undefined) {
    env.OPENBLAS_NUM_THREADS = '1';
  }
  // RNTN_ADDON, when set, names the addon binary to load instead of the one
  // node-gyp-build finds (build/Release, then prebuilds/): `npm run
  // test:sanitize` points it at the sanitizer build in build-asan/. Worker
  // threads inherit it with the rest of the environment.
  const override = env.RNTN_ADDON;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeGypBuild = require('node-gyp-build') as (dir: string) => unknown;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const loaded = (override ? require(path.resolve(override)) : nodeGypBuild(packageRoot())) as Addon;
  const check = loaded.gemmSelfTest();
  if (!(check.float32 <= GEMM_TOLERANCE.float32 && check.float64 <= GEMM_TOLERANCE.float64)) {
    const info = loaded.blasInfo();
    throw new Error(
      `OpenBLAS's ${info.corename} kernels computed wrong matrix products on this CPU ` +
        `(relative error float32 ${check.float32}, float64 ${check.float64}). ` +
        `Choose other kernels with OPENBLAS_CORETYPE, e.g. OPENBLAS_CORETYPE=Haswell or =Prescott.`,
    );
  }
  addon = loaded;
  return addon;
}

/** The directory holding package.json, build/ and prebuilds/. */
export function packageRoot(): string {
  return path.resolve(__dirname, '..');
}

/** The loaded native addon (loaded on first use). */
export function native(): Addon {
  return load();
}

/** Which OpenBLAS kernels run, and who chose them. */
export function blasInfo(): BlasInfo {
  const info = load().blasInfo();
  return { ...info, coretype: coretype! };
}

/** A one-line description of the BLAS in use, for logs and benchmarks. */
export function describeBlas(): string {
  const b = blasInfo();
  const who = b.coretype.chosenBy === 'user' ? `OPENBLAS_CORETYPE=${b.coretype.value} set by the user` :
    b.coretype.chosenBy === 'rntn' ? `OPENBLAS_CORETYPE=${b.coretype.value} chosen by rntn for this CPU` :
    'detected by OpenBLAS';
  return `OpenBLAS kernel ${b.corename} (${who}), ${b.threads} BLAS thread(s)`;
}

/**
 * Throws when the native forward pass produced a non-finite probability: a
 * model whose finite but huge weights overflow (tanh saturates, but the
 * classifier's scores do not). Reported, never passed on as a prediction.
 */
export function assertFiniteProbabilities(probs: Float32Array | Float64Array, trees: string): void {
  const bad = probs.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) {
    throw new RangeError(`the model's outputs overflowed to non-finite values on ${trees}: its weights are too large to use`);
  }
}

/** The dimensions the native core needs, from a model. */
export function nativeDims(model: Model): NativeDims {
  return { dim: model.config.dim, classes: model.config.classes, vocab: model.vocab.size, leafTanh: model.config.leaf === 'tanh' };
}

export function createWorkspace(): NativeWorkspace {
  return new (load().Workspace)();
}

/** How many parts NativeWorkspace.packedWeightGradient splits a schedule's weight gradient into (rntn.h, kWeightGradientParts). */
export function weightGradientParts(): number {
  return native().weightGradientParts;
}

/** Values a schedule with `internal` internal nodes writes into its `deferTo` buffer (rntn.h, weightGradientInputSize). */
export function weightGradientInputSize(dim: number, internal: number): number {
  return native().weightGradientInputSize(dim, internal);
}
