import { Random } from './random';
import { Vocabulary } from './vocab';

/** How a leaf turns its word vector into an activation: the paper's `x = L[w]` or CoreNLP's `x = tanh(L[w])`. */
export type LeafActivation = 'identity' | 'tanh';

export interface ModelConfig {
  /** Hidden size d. */
  readonly dim: number;
  /** Number of sentiment classes C. */
  readonly classes: number;
  readonly leaf: LeafActivation;
}

/**
 * The parameter groups, in the order they sit in the one parameter buffer.
 * V is directly followed by W on purpose: the native core treats the two as a
 * single (2d²+d) × 2d matrix [Vf; W] so that the tensor and the matrix
 * products of a level are one GEMM (see native/rntn.h).
 */
export const TENSOR_NAMES = ['V', 'W', 'b', 'Ws', 'bs', 'L'] as const;
export type TensorName = (typeof TENSOR_NAMES)[number];

export type FloatArray = Float32Array | Float64Array;

/** Shapes of every tensor, exactly as DESIGN.md names them (row-major). */
export function tensorShapes(dim: number, classes: number, vocabSize: number): Record<TensorName, number[]> {
  return {
    V: [dim, 2 * dim, 2 * dim],
    W: [dim, 2 * dim],
    b: [dim],
    Ws: [classes, dim],
    bs: [classes],
    L: [vocabSize, dim],
  };
}

/** Where each tensor lives inside the flat parameter buffer. */
export class ParameterLayout {
  readonly offsets: Readonly<Record<TensorName, number>>;
  readonly shapes: Readonly<Record<TensorName, number[]>>;
  /** Total number of scalars. */
  readonly size: number;

  constructor(
    readonly dim: number,
    readonly classes: number,
    readonly vocabSize: number,
  ) {
    for (const [name, v] of [['dim', dim], ['classes', classes], ['vocabulary size', vocabSize]] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    if (classes < 2) throw new RangeError(`classes must be at least 2, got ${classes}`);
    this.shapes = tensorShapes(dim, classes, vocabSize);
    const offsets = {} as Record<TensorName, number>;
    let at = 0;
    for (const name of TENSOR_NAMES) {
      offsets[name] = at;
      at += this.count(name);
    }
    this.offsets = offsets;
    this.size = at;
  }

  count(name: TensorName): number {
    return this.shapes[name].reduce((a, b) => a * b, 1);
  }

  /** Named views into `buffer`, which must have exactly {@link size} elements. */
  views<T extends FloatArray>(buffer: T): Record<TensorName, T> {
    if (buffer.length !== this.size) {
      throw new RangeError(`parameter buffer has ${buffer.length} values, the layout needs ${this.size}`);
    }
    const views = {} as Record<TensorName, T>;
    for (const name of TENSOR_NAMES) {
      const start = this.offsets[name];
      views[name] = buffer.subarray(start, start + this.count(name)) as T;
    }
    return views;
  }
}

export interface InitOptions {
  dim?: number;
  classes?: number;
  leaf?: LeafActivation;
  seed?: number;
}

/**
 * An RNTN: its configuration, vocabulary and parameters. The parameters are
 * one contiguous buffer (optionally a SharedArrayBuffer, so worker threads can
 * read them in place) with a named view per tensor, so that an optimizer is a
 * single loop and the native core receives one array.
 */
export class Model {
  readonly layout: ParameterLayout;
  readonly tensors: Record<TensorName, Float32Array>;

  constructor(
    readonly config: ModelConfig,
    readonly vocab: Vocabulary,
    readonly params: Float32Array = new Float32Array(new ParameterLayout(config.dim, config.classes, vocab.size).size),
  ) {
    this.layout = new ParameterLayout(config.dim, config.classes, vocab.size);
    // The native core reads anything but 'tanh' as identity: an unknown name would train one thing and record another.
    if (config.leaf !== 'identity' && config.leaf !== 'tanh') throw new RangeError(`leaf must be "identity" or "tanh", got ${JSON.stringify(config.leaf)}`);
    this.tensors = this.layout.views(params);
  }

  /**
   * A freshly initialised model. The distributions, and why:
   * - `W` = ½[I I] + U(±1/(2√d)) per block: a new node starts as the average of
   *   its children (so activations neither vanish nor blow up with depth),
   *   with noise to break symmetry — CoreNLP's scheme, halved so the sum of two
   *   children does not saturate tanh at the top of long sentences.
   * - `V` ~ U(±1/(4d)) (CoreNLP): the tensor starts as a small correction to W.
   * - `Ws` ~ U(±1/√d) (CoreNLP); `b`, `bs` = 0.
   * - `L` ~ U(±0.1): small enough that tanh is near-linear at the leaves, big
   *   enough that words are told apart from the first step.
   */
  static create(vocab: Vocabulary, options: InitOptions = {}): Model {
    const config: ModelConfig = {
      dim: options.dim ?? 25,
      classes: options.classes ?? 5,
      leaf: options.leaf ?? 'identity',
    };
    const model = new Model(config, vocab);
    const rng = new Random(options.seed ?? 1);
    const d = config.dim;
    const { V, W, Ws, L } = model.tensors;
    for (let i = 0; i < V.length; i++) V[i] = rng.symmetric(1 / (4 * d));
    const rW = 1 / (2 * Math.sqrt(d));
    for (let r = 0; r < d; r++) {
      for (let c = 0; c < 2 * d; c++) W[r * 2 * d + c] = rng.symmetric(rW) + (c % d === r ? 0.5 : 0);
    }
    for (let i = 0; i < Ws.length; i++) Ws[i] = rng.symmetric(1 / Math.sqrt(d));
    for (let i = 0; i < L.length; i++) L[i] = rng.symmetric(0.1);
    return model;
  }
}
