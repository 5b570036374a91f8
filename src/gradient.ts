import { compileChunks, type CompiledBatch, type LossWeights } from './batch';
import type { FloatArray, Model, TensorName } from './model';
import { TENSOR_NAMES } from './model';
import { Random } from './random';
import { createWorkspace, nativeDims, type NativeWorkspace, type Schedule } from './native';
import type { TreeNode } from './tree';

export type Precision = 'float32' | 'float64';

export interface LossAndGradient<T extends FloatArray> {
  /** Summed −log y[label] over every labelled node of every tree (no regularisation). */
  loss: number;
  /** ∂loss/∂θ in the model's parameter layout. */
  gradient: T;
  /** Named views of `gradient`: L, W, b, V, Ws, bs, shaped as the model's tensors. */
  tensors: Record<TensorName, T>;
}

/**
 * Summed loss and unregularised gradient over `trees`: what `rntn grad`
 * writes and what other implementations compare against. In float64 the
 * parameters are widened first, which is how the gradient check runs.
 */
export function lossAndGradient(model: Model, trees: readonly TreeNode[], precision: 'float64', terms?: LossTerms): LossAndGradient<Float64Array>;
export function lossAndGradient(model: Model, trees: readonly TreeNode[], precision?: 'float32', terms?: LossTerms): LossAndGradient<Float32Array>;
export function lossAndGradient(model: Model, trees: readonly TreeNode[], precision: Precision = 'float32', terms: LossTerms = {}): LossAndGradient<FloatArray> {
  if (precision !== 'float32' && precision !== 'float64') throw new RangeError(`precision must be "float32" or "float64", got ${JSON.stringify(precision)}`);
  const params = precision === 'float64' ? Float64Array.from(model.params) : model.params;
  const gradient = precision === 'float64' ? new Float64Array(params.length) : new Float32Array(params.length);
  const workspace = createWorkspace();
  const dims = nativeDims(model);
  let loss = 0;
  for (const batch of chunks(model, trees, terms)) loss += workspace.forwardBackward(params, gradient, dims, batch);
  return { loss, gradient, tensors: model.layout.views(gradient) };
}

/** Dropout on the classifier's input with a fixed mask (Schedule.dropout): chunk i of the trees uses seed + i. */
export type Dropout = { rate: number; seed: number };

/** The terms of the loss beyond the paper's; the root and polarity weights as TreeTable.compile takes them. */
export interface LossTerms extends LossWeights {
  dropout?: Dropout;
  /** The target distributions of a compiled chunk's nodes (Schedule.target); default the one-hot labels. */
  target?: (batch: CompiledBatch) => Float32Array;
}

function chunks(model: Model, trees: readonly TreeNode[], terms: LossTerms): Schedule[] {
  const { dropout, target, rootWeight, polarityWeight, rootPolarityWeight } = terms;
  return [...compileChunks(trees, model.vocab, { rootWeight, polarityWeight, rootPolarityWeight })].map((batch, i) => ({
    ...batch,
    ...(dropout && { dropout: { rate: dropout.rate, seed: dropout.seed + i } }),
    ...(target && { target: target(batch) }),
  }));
}

export interface GradientCheckOptions extends LossTerms {
  /** Coordinates checked per parameter group (all of them when the group is smaller). Default 200. */
  samples?: number;
  /** Finite-difference step. Default 1e-3 (the 5-point stencil's error is O(h⁴)). */
  step?: number;
  seed?: number;
  /**
   * The gradient to check, in the model's layout. Default: rntn's own float64
   * gradient. Another implementation can pass its gradient here to check it
   * against rntn's finite differences.
   */
  analytic?: Float64Array;
}

export interface GroupCheck {
  group: TensorName;
  checked: number;
  /** ‖analytic − numeric‖ / max(‖analytic‖, ‖numeric‖) over the checked coordinates. */
  relativeError: number;
  /** The largest |analytic − numeric| of a single coordinate. */
  maxAbsoluteError: number;
}

/**
 * Compares the analytic float64 gradient with finite differences of the
 * float64 loss, group by group.
 *
 * The 5-point stencil [−f(θ+2h) + 8f(θ+h) − 8f(θ−h) + f(θ−2h)] / 12h has
 * truncation error O(h⁴), so a large step (1e-3) keeps rounding error (about
 * ε·|f|/h) small too. The error is measured per group in norms rather than per
 * coordinate because a coordinate whose gradient is itself at rounding level
 * (1e-12, say) has an undefined relative error; the largest absolute
 * difference is reported beside it so nothing hides in the norm.
 * Word-vector coordinates are drawn only from rows the trees use: the rest
 * have a zero gradient on both sides.
 */
export function gradientCheck(model: Model, trees: readonly TreeNode[], options: GradientCheckOptions = {}): GroupCheck[] {
  const samples = options.samples ?? 200;
  const h = options.step ?? 1e-3;
  // A check of no coordinates would pass whatever the gradient.
  if (!(Number.isInteger(samples) && samples >= 1)) throw new RangeError(`samples must be a positive integer, got ${samples}`);
  if (!(Number.isFinite(h) && h > 0)) throw new RangeError(`step must be a finite number > 0, got ${h}`);
  const params = Float64Array.from(model.params);
  // Under dropout the mask is fixed by its seed, so the loss is still a smooth function of θ.
  const analytic = options.analytic ?? lossAndGradient(model, trees, 'float64', options).gradient;
  if (analytic.length !== params.length) {
    throw new RangeError(`analytic gradient has ${analytic.length} values, the model has ${params.length}`);
  }
  const batches = chunks(model, trees, options);
  const workspace: NativeWorkspace = createWorkspace();
  const dims = nativeDims(model);
  const lossAt = (index: number, delta: number): number => {
    const saved = params[index];
    params[index] = saved + delta;
    let loss = 0;
    for (const batch of batches) loss += workspace.forward(params, dims, batch);
    params[index] = saved;
    return loss;
  };
  const usedRows = new Set<number>();
  for (const batch of compileChunks(trees, model.vocab)) for (const w of batch.words) usedRows.add(w);

  const rng = new Random(options.seed ?? 1);
  const results: GroupCheck[] = [];
  for (const group of TENSOR_NAMES) {
    const start = model.layout.offsets[group];
    let candidates: number[];
    if (group === 'L') {
      const d = model.config.dim;
      candidates = [...usedRows].sort((a, b) => a - b).flatMap((row) => Array.from({ length: d }, (_, q) => start + row * d + q));
    } else {
      candidates = Array.from({ length: model.layout.count(group) }, (_, i) => start + i);
    }
    // A sample without replacement, from a fixed seed so a failure can be rerun.
    for (let i = 0; i < Math.min(samples, candidates.length); i++) {
      const j = i + rng.int(candidates.length - i);
      [candidates[i], candidates[j]] = [candidates[j], candidates[i]];
    }
    const chosen = candidates.slice(0, Math.min(samples, candidates.length));
    let diff2 = 0;
    let a2 = 0;
    let n2 = 0;
    let maxAbs = 0;
    for (const index of chosen) {
      const numeric = (-lossAt(index, 2 * h) + 8 * lossAt(index, h) - 8 * lossAt(index, -h) + lossAt(index, -2 * h)) / (12 * h);
      const a = analytic[index];
      diff2 += (a - numeric) ** 2;
      a2 += a * a;
      n2 += numeric * numeric;
      maxAbs = Math.max(maxAbs, Math.abs(a - numeric));
    }
    const scale = Math.sqrt(Math.max(a2, n2));
    results.push({ group, checked: chosen.length, relativeError: scale === 0 ? 0 : Math.sqrt(diff2) / scale, maxAbsoluteError: maxAbs });
  }
  return results;
}
