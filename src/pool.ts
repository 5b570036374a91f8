/**
 * The worker-thread pool behind multi-threaded training.
 *
 * Exactness does not depend on the number of threads: every minibatch is cut
 * into a fixed number of shards (a training option, not the thread count),
 * each shard's gradient goes into a buffer of its own, and the update sums
 * the shard buffers in shard order, element by element. Threads only decide
 * who computes which shard and who updates which parameters, so 1, 2, 3 or 4
 * threads give the same bytes.
 *
 * A minibatch is posted through shared memory, not messages: the main thread
 * writes the shards' tree indices and bumps a counter; the workers, blocked
 * in Atomics.wait, wake, claim shards one at a time and compute them (all of
 * each shard's gradient but ∂V and ∂W, whose inputs go to the shard's
 * `deferred` buffer), then claim the shards' weight gradients (two tasks per
 * shard, each into the shard's `packed` buffer) one at a time, finish them,
 * wait at a barrier until every shard of the batch is done, then each
 * applies the AdaGrad step to its own share of the parameters (whole units
 * of V and W stepped from the shards' packed gradients, and a slice of the
 * other dense groups and every workers-th of the rows of L the batch touched
 * from the shards' buffers: denseShares, updateShare), rebuilds its units of
 * the shared prepared parameters, and counts itself done. The claiming is
 * what lets a core that runs faster at the moment take over part of a
 * slower one's work.
 * Measured, each in paired runs of 3 SST epochs:
 * - with a postMessage round trip per batch, each worker sat idle 0.4-0.7 ms
 *   between batches (a round trip between busy threads measured 0.09 ms);
 *   the shared-memory channel took the 2-thread rate from 7,000-10,000 to
 *   12,700-13,600 sentences/s;
 * - the update used to run on the main thread between batches: serial time
 *   for every worker, and the parameters and gradients it wrote had to
 *   travel back to the workers' cores;
 * - the main thread posts batches ahead of the one running (SLOTS slots
 *   of every per-batch array), and a worker starts the next as soon as
 *   every worker has applied its share of the previous update, without
 *   waiting for this thread: with two slots, 1 thread a median 1.12x
 *   faster over 7 pairs (0.97-1.42), 2 threads unchanged (median 1.01 over
 *   13 pairs, 0.78-1.20; there the main thread's work competes with the two
 *   workers for the two cores). With SLOTS slots, finish() waits for half
 *   of the batches in flight at once, so this thread wakes once per
 *   several batches instead of once per batch (see SLOTS);
 * - the claimable weight gradient (one task per shard then) with spinning
 *   waits, against the pool before it (every shard's whole gradient by its
 *   owner, waits asleep): 2 threads a median 1.12x over 8 pairs (0.94-1.48)
 *   and 1.04x over 16 more, interleaved in one process (0.83-1.35; 10 of
 *   the 16 faster). docs/performance.md has the rest.
 *
 * Parameters, AdaGrad's history, gradient buffers, the shards' deferred
 * weight-gradient inputs, each shard's touched words and losses are
 * SharedArrayBuffers too; messages are used only for start-up and for errors.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { LossWeights, TreeTableData } from './batch';
import { ParameterLayout } from './model';
import { native, weightGradientInputSize, weightGradientParts, type NativeDims, type Schedule } from './native';

/** A parameter group the update treats alike: [start, end) in the buffer, L2 weight λ. */
export interface UpdateRange {
  start: number;
  end: number;
  lambda: number;
}

/** AdaGrad's settings and state, as the workers apply it (src/train.ts, AdaGrad). */
export interface UpdateConfig {
  /** Σg² per parameter (shared memory). */
  history: Float32Array;
  epsilon: number;
  /** Updated every batch, whole: the groups before L, in buffer order. */
  dense: UpdateRange[];
  /** Offset of L in the buffer, the size of a row, and λ_L (only rows some shard touched are updated). */
  rows: { offset: number; dim: number; lambda: number };
}

/**
 * Batches the main thread may have in flight. When it has to wait for one,
 * it waits for half of those in flight (finish), so it wakes once per
 * SLOTS / 2 batches: each wake-up costs it ~0.1 ms of CPU (its promise and
 * event-loop turn), and with as many workers as cores it takes that time
 * from a worker, which the other workers then wait for at the next barrier.
 * (Until session 9 it slept on COMPLETED and so woke at every worker's
 * completion all the same: see WAKE_AT.) It also bounds how late a stop
 * (time, Ctrl-C) takes effect: SLOTS batches. 16 measured no better than 8
 * once the wake-ups were fixed (bench/compare-trainers.js, 2 threads, 16
 * rounds: 1.000; docs/performance.md, session 9).
 */
export const SLOTS = 8;

/**
 * The shared memory through which the main thread posts minibatches and the
 * workers report them done. Batch n (counting from 1) uses slot n mod SLOTS
 * of every per-batch array, so the main thread can post batches ahead of the
 * one running.
 */
export interface BatchChannel {
  /** [arrived, generation, aborted, posted, completed, readied, wakeAt, woken]: see the constants below. */
  control: Int32Array;
  /** Per slot: the next shard of the batch for a worker to claim. */
  shardNext: Int32Array;
  /** Per slot, `trees.length / SLOTS` entries (the batch size): the batch's tree indices, shard after shard. */
  trees: Int32Array;
  /** Per slot, shards + 1 entries: shard s is [shardStart[s], shardStart[s+1]) of the slot's trees. */
  shardStart: Int32Array;
  /** Per slot and shard: dropout rate (0: none) and mask seed. */
  dropout: Float64Array;
  /** Per slot: the loss's scale (1 / trees in the batch) and the batch's AdaGrad learning rate. */
  scale: Float64Array;
  learningRate: Float64Array;
  /** Per shard: its distinct word ids, in its stripe of `vocab` slots, and how many there are (the running batch's). */
  shardWords: Int32Array;
  shardWordCount: Int32Array;
  /** Per slot and shard: the summed loss of its labelled nodes. */
  shardLoss: Float64Array;
  /** Per slot and shard: its internal nodes (the size of its deferred weight-gradient inputs). */
  shardInternal: Int32Array;
  /** Per shard: the latest batch whose deferred inputs (and loss, words, internal nodes) the worker that computed it has written. */
  shardReady: Int32Array;
  /** Per weight-gradient task (shard × part, src/worker.ts): the latest batch for which a worker has claimed it. */
  taskClaimed: Int32Array;
  /** Per slot and worker: nodes computed, and 1 when its share of the update met only finite gradients. */
  workerNodes: Int32Array;
  workerFinite: Int32Array;
}

/**
 * A worker's part of every update (denseShares): the slice [from, to) of the
 * dense groups it applies AdaGrad to. [from, unpackedTo) of it is the units
 * [firstUnit, endUnit) of V and W, which it steps from the shards' packed
 * weight gradients (native adagradPackedStep, with λ_V and λ_W) and whose
 * prepared parameters it then rebuilds; the rest, [unpackedTo, to), is
 * stepped from the shards' gradient buffers (updateShare).
 */
export interface DenseShare {
  from: number;
  to: number;
  unpackedTo: number;
  firstUnit: number;
  endUnit: number;
  lambdaV: number;
  lambdaW: number;
}

/** What every worker receives once, at start (shared memory stays shared). */
export interface WorkerInit {
  worker: number;
  workers: number;
  params: Float32Array;
  /** The prepared parameters (native prepareParameters) of `params` as they are between updates. */
  prepared: Float32Array;
  share: DenseShare;
  grads: Float32Array[];
  /** Per shard: its weight-gradient inputs (NativeWorkspace.forwardBackwardShards's `deferTo`), readable by every worker. */
  deferred: Float32Array[];
  /** Per shard: its packed weight gradient (NativeWorkspace.packedWeightGradient), summed and unpacked by the update. */
  packed: Float32Array[];
  table: TreeTableData;
  dims: NativeDims;
  update: UpdateConfig;
  channel: BatchChannel;
  /** What the shards' schedules weigh (TreeTable.compile's defaults when absent). */
  lossWeights: LossWeights;
  /** How long a wait spins before it sleeps (waitWhileEqual): 0 when the workers outnumber the cores. */
  spinMs: number;
}

export interface BatchResult {
  /** Summed loss of the batch's labelled nodes, summed over shards in shard order. */
  loss: number;
  nodes: number;
  /** False when a gradient value was non-finite: the step that was applied is garbage, stop. */
  gradientFinite: boolean;
}

export interface PoolOptions {
  threads: number;
  /**
   * The parameters, which only the pool's updates may change while it is
   * open: it builds their prepared form (native prepareParameters) once, at
   * construction, and the workers keep it in step with their updates.
   */
  params: Float32Array;
  /** One gradient buffer per shard, each the size of `params`, all zero. */
  grads: Float32Array[];
  table: TreeTableData;
  dims: NativeDims;
  update: UpdateConfig;
  /** The most trees a batch may hold (default: the whole table); sizes each shard's deferred buffer. */
  batchSize?: number;
  /** Root weight and polarity weights of the shards' schedules (default: TreeTable.compile's, the paper's loss). */
  lossWeights?: LossWeights;
  /** The worker's script; tests substitute one that fails. */
  workerScript?: string;
}

// Indices into BatchChannel.control.
const ARRIVED = 0; // workers at the barrier so far
const GENERATION = 1; // bumped each time the barrier opens
const ABORTED = 2; // 1 once the pool closes: every wait returns
export const POSTED = 3; // batches the main thread has posted
export const COMPLETED = 4; // batches × workers done: batch n is done when this reaches n·workers
export const READIED = 5; // bumped whenever a worker has marked its shards ready (shardReady)
// The main thread sleeps on WOKEN until COMPLETED reaches WAKE_AT (finish); the
// worker whose completion gets it there sets WAKE_AT back to NEVER and bumps
// WOKEN. It used to sleep on COMPLETED itself, so every worker's completion
// of every batch woke it (an event-loop turn each), and with as many workers
// as cores its time is taken from a worker: perf at 2 threads, its samples
// per 1,000 of the workers' went from 29-37 to 23-27, and 2 threads trained
// 1.05-1.06× faster (docs/performance.md, session 9).
export const WAKE_AT = 6;
export const WOKEN = 7;
export const NEVER = 0x7fffffff;

/** How long a worker spins before it sleeps in Atomics.wait (milliseconds), when every worker has a core. */
const SPIN_MS = 2;

export class TrainingPool {
  private readonly workers: Worker[];
  private readonly channel: BatchChannel;
  private readonly batchSize: number;
  private posted = 0;
  private finished = 0;
  private failure?: Error;
  /** Rejects when the pool fails, so that waiting for a batch cannot outlive a dead worker. */
  private readonly failed: Promise<never>;
  private rejectFailed!: (e: Error) => void;
  private readonly savedBlasThreads: number;
  private closed = false;

  constructor(private readonly options: PoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
    if (options.batchSize !== undefined && (!Number.isInteger(options.batchSize) || options.batchSize < 1)) {
      throw new RangeError(`batchSize must be a positive integer, got ${options.batchSize}`);
    }
    for (const buffer of [options.params, options.update.history, ...options.grads]) {
      if (!(buffer.buffer instanceof SharedArrayBuffer)) throw new TypeError('parameters, history and gradients must live in SharedArrayBuffers');
    }
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => {}); // observed through finish(); never an unhandled rejection
    // Load the addon here first: it sets OpenBLAS's environment, which only
    // the main thread's environment can do. Then one BLAS thread per worker.
    this.savedBlasThreads = native().blasThreads();
    native().blasThreads(1);
    const shards = options.grads.length;
    const workers = Math.min(options.threads, shards);
    const int32 = (n: number) => new Int32Array(new SharedArrayBuffer(4 * Math.max(1, n)));
    const float64 = (n: number) => new Float64Array(new SharedArrayBuffer(8 * Math.max(1, n)));
    // A batch holds each tree of the table at most once.
    const maxTrees = Math.max(0, (options.table.treeStart?.length ?? 1) - 1);
    this.batchSize = Math.min(maxTrees, options.batchSize ?? maxTrees);
    // A shard may be a whole batch: each deferred buffer fits the batchSize largest trees.
    const deferredSize = weightGradientInputSize(options.dims.dim, mostInternalNodes(options.table, this.batchSize));
    const deferred = Array.from({ length: shards }, () => new Float32Array(new SharedArrayBuffer(4 * Math.max(1, deferredSize))));
    const packed = Array.from({ length: shards }, () => new Float32Array(new SharedArrayBuffer(4 * native().packedWeightGradientSize(options.dims.dim))));
    // The prepared parameters, built here once and then, after every update,
    // unit by unit by the worker that updated the unit (denseShares).
    const prepared = new Float32Array(new SharedArrayBuffer(4 * native().preparedSize(options.dims.dim)));
    native().prepareParameters(options.params, options.dims, prepared, 0, options.dims.dim + 1);
    const shares = denseShares(options.update, options.dims, workers);
    this.channel = {
      control: int32(WOKEN + 1),
      shardNext: int32(SLOTS),
      trees: int32(SLOTS * this.batchSize),
      shardStart: int32(SLOTS * (shards + 1)),
      dropout: float64(SLOTS * 2 * shards),
      scale: float64(SLOTS),
      learningRate: float64(SLOTS),
      shardWords: int32(shards * Math.max(1, options.dims.vocab)),
      shardWordCount: int32(shards),
      shardLoss: float64(SLOTS * shards),
      shardInternal: int32(SLOTS * shards),
      shardReady: int32(shards),
      taskClaimed: int32(shards * weightGradientParts()),
      workerNodes: int32(SLOTS * workers),
      workerFinite: int32(SLOTS * workers),
    };
    this.channel.control[WAKE_AT] = NEVER;
    // Always the compiled worker (lib/worker.js), also when this module runs from src/ under vitest.
    const script = options.workerScript ?? path.resolve(__dirname, '..', 'lib', 'worker.js');
    this.workers = Array.from({ length: workers }, (_, worker) => {
      const init: WorkerInit = {
        worker,
        workers,
        params: options.params,
        prepared,
        share: shares[worker],
        grads: options.grads,
        deferred,
        packed,
        table: options.table,
        dims: options.dims,
        update: options.update,
        channel: this.channel,
        lossWeights: options.lossWeights ?? {},
        // A spinning worker would hold a core another worker needs.
        spinMs: workers <= os.availableParallelism() ? SPIN_MS : 0,
      };
      const w = new Worker(script, { workerData: init });
      w.on('error', (error) => this.fail(error));
      w.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`a training worker exited unexpectedly (exit code ${code})`));
      });
      return w;
    });
  }

  get threads(): number {
    return this.workers.length;
  }

  /** Batches posted and not yet finished (0 to SLOTS). */
  get inFlight(): number {
    return this.posted - this.finished;
  }

  /**
   * Posts a minibatch: the workers compute every shard's gradient
   * (`shards[s]` = the table indices of shard s's trees, under `dropout[s]`
   * when given) into `grads[s]`, then apply the update with the loss scaled
   * by `step.scale` and learning rate `step.learningRate`. At most SLOTS
   * batches may be in flight; each starts as soon as the previous one's
   * update is applied, so the workers never wait for this thread between
   * them. Results come, in order, from finish().
   */
  post(shards: Int32Array[], step: { scale: number; learningRate: number }, dropout?: Schedule['dropout'][]): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new Error('the training pool is closed');
    if (this.inFlight >= SLOTS) throw new Error(`the training pool already has ${SLOTS} batches in flight`);
    if (shards.length !== this.options.grads.length) throw new RangeError(`expected ${this.options.grads.length} shards, got ${shards.length}`);
    const total = shards.reduce((n, s) => n + s.length, 0);
    if (total > this.batchSize) throw new RangeError(`a batch of ${total} trees is more than the pool's batch size, ${this.batchSize}`);
    const c = this.channel;
    const n = this.posted + 1;
    const slot = n % SLOTS;
    const S = shards.length;
    // The slot's previous batch, n − SLOTS, is finished: nobody reads these any more.
    let at = 0;
    shards.forEach((trees, s) => {
      c.shardStart[slot * (S + 1) + s] = at;
      c.trees.set(trees, slot * this.batchSize + at);
      at += trees.length;
      c.dropout[2 * (slot * S + s)] = dropout?.[s]?.rate ?? 0;
      c.dropout[2 * (slot * S + s) + 1] = dropout?.[s]?.seed ?? 0;
    });
    c.shardStart[slot * (S + 1) + S] = at;
    c.shardNext[slot] = 0;
    c.scale[slot] = step.scale;
    c.learningRate[slot] = step.learningRate;
    this.posted = n;
    Atomics.store(c.control, POSTED, n);
    Atomics.notify(c.control, POSTED);
  }

  /**
   * The result of the oldest batch in flight. When it is not done yet, waits
   * until half of the batches in flight are (at least the oldest), so that
   * this thread wakes once per several batches (SLOTS).
   */
  async finish(): Promise<BatchResult> {
    if (this.inFlight === 0) throw new Error('no batch is in flight');
    const c = this.channel;
    const n = this.finished + 1;
    const W = this.workers.length;
    const done = Atomics.load(c.control, COMPLETED) >= n * W;
    const target = done ? n * W : (this.finished + Math.max(1, Math.floor(this.inFlight / 2))) * W;
    for (;;) {
      if (this.failure) throw this.failure;
      // WAKE_AT is set before COMPLETED is read again: a completion either
      // shows here or sees the target and wakes this thread (seq-cst order).
      const woken = Atomics.load(c.control, WOKEN);
      Atomics.store(c.control, WAKE_AT, target);
      if (Atomics.load(c.control, COMPLETED) >= target) {
        Atomics.store(c.control, WAKE_AT, NEVER);
        break;
      }
      const wait = Atomics.waitAsync(c.control, WOKEN, woken);
      if (wait.async) await Promise.race([wait.value, this.failed]);
    }
    this.finished = n;
    const slot = n % SLOTS;
    const S = this.options.grads.length;
    let loss = 0;
    for (let s = 0; s < S; s++) loss += c.shardLoss[slot * S + s];
    let nodes = 0;
    let gradientFinite = true;
    for (let w = 0; w < W; w++) {
      nodes += c.workerNodes[slot * W + w];
      if (c.workerFinite[slot * W + w] !== 1) gradientFinite = false;
    }
    return { loss, nodes, gradientFinite };
  }

  /** Stops every worker and restores OpenBLAS's thread count; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // Wake every worker from whatever it waits for; each then returns from its loop.
    const control = this.channel.control;
    Atomics.store(control, ABORTED, 1);
    for (const index of [GENERATION, POSTED, COMPLETED, READIED, WOKEN]) {
      Atomics.add(control, index, 1);
      Atomics.notify(control, index);
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
    native().blasThreads(this.savedBlasThreads);
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    this.rejectFailed(error);
    // No thread may outlive a failed run.
    void this.close();
  }
}

/**
 * Internal nodes of the `trees` largest trees of the table together: the most
 * any batch of that many can have. Trees are binary, so a tree of n nodes has
 * (n − 1) / 2 internal ones.
 */
function mostInternalNodes(table: TreeTableData, trees: number): number {
  const { treeStart } = table;
  if (!treeStart) return 0;
  const internal = Array.from({ length: Math.max(0, treeStart.length - 1) }, (_, t) => (treeStart[t + 1] - treeStart[t] - 1) / 2);
  internal.sort((a, b) => b - a);
  return internal.slice(0, trees).reduce((sum, n) => sum + n, 0);
}

/** Whether the pool has closed (workers poll it when they wake). */
export function aborted(control: Int32Array): boolean {
  return Atomics.load(control, ABORTED) !== 0;
}

/**
 * Waits until all `workers` have arrived (called by each worker once per
 * batch). Returns false when the pool aborted the run instead.
 */
export function barrier(control: Int32Array, workers: number, spinMs: number): boolean {
  const generation = Atomics.load(control, GENERATION);
  if (Atomics.load(control, ABORTED)) return false;
  if (Atomics.add(control, ARRIVED, 1) === workers - 1) {
    Atomics.store(control, ARRIVED, 0);
    Atomics.add(control, GENERATION, 1);
    Atomics.notify(control, GENERATION);
    return true;
  }
  while (Atomics.load(control, GENERATION) === generation) waitWhileEqual(control, GENERATION, generation, spinMs);
  return !Atomics.load(control, ABORTED);
}

/**
 * Returns once array[index] differs from `value` or after a wake-up (callers
 * re-check): spins up to `spinMs` first, then sleeps in Atomics.wait. The
 * waits between a batch's phases last 0.1-0.5 ms, and a worker that slept
 * through them computed its next phase slower (docs/performance.md: 6
 * alternating pairs with and without the spin; why is a guess: an idle
 * virtual CPU loses its core or its caches to another tenant).
 */
export function waitWhileEqual(array: Int32Array, index: number, value: number, spinMs: number): void {
  const until = performance.now() + spinMs;
  while (Atomics.load(array, index) === value) {
    if (performance.now() >= until) {
      Atomics.wait(array, index, value);
      return;
    }
  }
}

/**
 * Each worker's slice of the dense groups and the units of V and W it steps
 * and rebuilds. ∂V, ∂W and the prepared parameters are made in units (unit
 * q < dim is V[q] alone, unit dim W alone: native adagradPackedStep and
 * prepareParameters), so the slices, about equal, have their ends moved to
 * the nearest edge of a unit: each unit is unpacked, stepped and rebuilt by
 * one worker, in one go, while it is in that worker's cache, and nobody
 * waits for anybody to do it. Each worker does 1 / workers of it instead of
 * all.
 */
export function denseShares(config: UpdateConfig, dims: NativeDims, workers: number): DenseShare[] {
  const layout = new ParameterLayout(dims.dim, dims.classes, dims.vocab);
  const slice = layout.count('V') / dims.dim;
  // edges[q] is where unit q begins (q ≤ dim; W follows V), edges[dim + 1] where W ends.
  const edges = [...Array.from({ length: dims.dim + 1 }, (_, q) => layout.offsets.V + q * slice), layout.offsets.W + layout.count('W')];
  const first = edges[0];
  const last = edges[dims.dim + 1];
  const denseStart = config.dense[0]?.start ?? 0;
  const denseEnd = config.dense[config.dense.length - 1]?.end ?? 0;
  // Either V and W are updated whole (training) or not at all (tests): a unit half updated would be rebuilt by nobody.
  const updatesUnits = denseStart <= first && last <= denseEnd;
  if (!updatesUnits && denseStart < last && first < denseEnd) throw new RangeError('the dense groups must cover V and W whole, or neither');
  const cut = (w: number) => {
    const at = denseStart + Math.floor((w * (denseEnd - denseStart)) / workers);
    if (!updatesUnits || at <= first || at >= last) return at;
    return edges.reduce((best, e) => (Math.abs(e - at) < Math.abs(best - at) ? e : best));
  };
  // Units before a cut (the cuts are edges, or outside V and W).
  const unitsBefore = (at: number) => (updatesUnits ? edges.slice(0, dims.dim + 1).filter((e) => e < at).length : 0);
  const lambdaAt = (offset: number) => config.dense.find((g) => g.start <= offset && offset < g.end)?.lambda ?? 0;
  return Array.from({ length: workers }, (_, w) => {
    const from = cut(w);
    const to = cut(w + 1);
    const unpackedTo = updatesUnits ? Math.min(Math.max(from, last), to) : from;
    return { from, to, unpackedTo, firstUnit: unitsBefore(from), endUnit: unitsBefore(to), lambdaV: lambdaAt(first), lambdaW: lambdaAt(edges[dims.dim]) };
  });
}

/**
 * Worker `worker` of `workers`'s share of one update whose gradients are
 * summed over the shards' buffers, as [start, end) pairs and their λs: its
 * slice of the dense groups after V and W ([share.unpackedTo, share.to)),
 * and every `workers`-th of `rows` (the ascending distinct rows of L the
 * batch touched). The shares partition the update, and AdaGrad is
 * element-wise, so the bytes do not depend on how it is shared out. Rows
 * are dealt out in turn rather than in two halves because ids follow first
 * appearance in the training set: the high half is rare words, whose rows
 * are cold in cache, and with halves the second worker's update took
 * 1.3-1.7× the first's (instrumented workers, 3 epochs at 2 threads, three
 * runs).
 */
export function updateShare(
  config: UpdateConfig,
  { unpackedTo: from, to }: DenseShare,
  rows: Int32Array,
  worker: number,
  workers: number,
): { ranges: Int32Array; lambdas: Float32Array } {
  // Written straight into typed arrays: it runs once per batch in every worker (~4 µs; ~12 with arrays pushed to).
  const most = config.dense.length + Math.ceil(rows.length / workers);
  const ranges = new Int32Array(2 * most);
  const lambdas = new Float32Array(most);
  let n = 0;
  for (const g of config.dense) {
    const start = Math.max(g.start, from);
    const end = Math.min(g.end, to);
    if (start < end) (ranges[2 * n] = start), (ranges[2 * n + 1] = end), (lambdas[n++] = g.lambda);
  }
  const { offset, dim, lambda } = config.rows;
  for (let i = worker; i < rows.length; i += workers) {
    ranges[2 * n] = offset + rows[i] * dim;
    ranges[2 * n + 1] = offset + (rows[i] + 1) * dim;
    lambdas[n++] = lambda;
  }
  return { ranges: ranges.subarray(0, 2 * n), lambdas: lambdas.subarray(0, n) };
}
