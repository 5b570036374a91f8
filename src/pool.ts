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
 * A minibatch is one message to every worker and one reply from each. A
 * worker computes its shards, waits at a barrier (Atomics on shared memory)
 * until every shard of the batch is done, then applies the AdaGrad step to
 * its own share of the parameters: a contiguous slice of the dense groups
 * and a slice of the rows of L the batch touched. The update used to run on
 * the main thread between batches: serial time for every worker, and the
 * parameters and gradients it wrote had to travel back to the workers' cores.
 *
 * Parameters, AdaGrad's history, gradient buffers, each shard's touched words
 * and losses are SharedArrayBuffers: messages carry only tree indices one way
 * and per-shard counts the other.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { TreeTableData } from './batch';
import { native, type NativeDims, type Schedule } from './native';

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
  learningRate: number;
  epsilon: number;
  /** Updated every batch, whole: the groups before L, in buffer order. */
  dense: UpdateRange[];
  /** Offset of L in the buffer, the size of a row, and λ_L (only rows some shard touched are updated). */
  rows: { offset: number; dim: number; lambda: number };
}

/** What every worker receives once, at start (shared memory stays shared). */
export interface WorkerInit {
  worker: number;
  workers: number;
  params: Float32Array;
  grads: Float32Array[];
  table: TreeTableData;
  dims: NativeDims;
  update: UpdateConfig;
  /** Per shard: its distinct word ids, in its stripe of `vocab` slots. */
  shardWords: Int32Array;
  /** Per shard: how many of its stripe's slots are in use; −1 while the shard is not done. */
  shardWordCount: Int32Array;
  /** Per shard: the summed loss of its labelled nodes. */
  shardLoss: Float64Array;
  /** [arrived, generation, aborted]: the barrier between computing and updating. */
  control: Int32Array;
}

export interface WorkerRequest {
  batch: number;
  tasks: { shard: number; trees: Int32Array; dropout?: Schedule['dropout'] }[];
  /** The loss's scale, 1 / trees in the batch. */
  scale: number;
}

export interface WorkerReply {
  batch: number;
  nodes: number;
  /** False when this worker's share of the update met a non-finite gradient. (With a non-finite loss no worker updates anything.) */
  finite: boolean;
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
  params: Float32Array;
  /** One gradient buffer per shard, each the size of `params`, all zero. */
  grads: Float32Array[];
  table: TreeTableData;
  dims: NativeDims;
  update: UpdateConfig;
  /** The worker's script; tests substitute one that fails. */
  workerScript?: string;
}

const ARRIVED = 0;
const GENERATION = 1;
const ABORTED = 2;

export class TrainingPool {
  private readonly workers: Worker[];
  private readonly shardWordCount: Int32Array;
  private readonly shardLoss: Float64Array;
  private readonly control: Int32Array;
  private pending?: { batch: number; waiting: number; replies: WorkerReply[]; resolve: (r: BatchResult) => void; reject: (e: Error) => void };
  private failure?: Error;
  private batches = 0;
  private readonly savedBlasThreads: number;
  private closed = false;

  constructor(private readonly options: PoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
    for (const buffer of [options.params, options.update.history, ...options.grads]) {
      if (!(buffer.buffer instanceof SharedArrayBuffer)) throw new TypeError('parameters, history and gradients must live in SharedArrayBuffers');
    }
    // Load the addon here first: it sets OpenBLAS's environment, which only
    // the main thread's environment can do. Then one BLAS thread per worker.
    this.savedBlasThreads = native().blasThreads();
    native().blasThreads(1);
    const shards = options.grads.length;
    const sharedInt32 = (n: number) => new Int32Array(new SharedArrayBuffer(4 * n));
    const shardWords = sharedInt32(shards * Math.max(1, options.dims.vocab));
    this.shardWordCount = sharedInt32(shards);
    this.shardLoss = new Float64Array(new SharedArrayBuffer(8 * shards));
    this.control = sharedInt32(3);
    // Always the compiled worker (lib/worker.js), also when this module runs from src/ under vitest.
    const script = options.workerScript ?? path.resolve(__dirname, '..', 'lib', 'worker.js');
    const workers = Math.min(options.threads, shards);
    this.workers = Array.from({ length: workers }, (_, worker) => {
      const init: WorkerInit = {
        worker,
        workers,
        params: options.params,
        grads: options.grads,
        table: options.table,
        dims: options.dims,
        update: options.update,
        shardWords,
        shardWordCount: this.shardWordCount,
        shardLoss: this.shardLoss,
        control: this.control,
      };
      const w = new Worker(script, { workerData: init });
      w.on('message', (reply: WorkerReply) => this.receive(reply));
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

  /**
   * Computes the gradient of every shard (`shards[s]` = the table indices of
   * shard s's trees, under `dropout[s]` when given) into `grads[s]`, then
   * applies the update with the loss scaled by `scale`. Resolves once the
   * parameters are updated.
   */
  run(shards: Int32Array[], scale: number, dropout?: Schedule['dropout'][]): Promise<BatchResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('the training pool is closed'));
    if (this.pending) return Promise.reject(new Error('the training pool is already running a batch'));
    if (shards.length !== this.options.grads.length) {
      return Promise.reject(new RangeError(`expected ${this.options.grads.length} shards, got ${shards.length}`));
    }
    const batch = this.batches++;
    // Empty shards (a last batch smaller than the shard count) touch no words and have no loss.
    this.shardWordCount.fill(0);
    this.shardLoss.fill(0);
    return new Promise((resolve, reject) => {
      const perWorker = this.workers.map(() => [] as WorkerRequest['tasks']);
      shards.forEach((trees, shard) => {
        if (trees.length > 0) perWorker[shard % this.workers.length].push({ shard, trees, dropout: dropout?.[shard] });
      });
      this.pending = { batch, waiting: this.workers.length, replies: [], resolve, reject };
      // Every worker takes part, with or without shards: each owns a share of the update.
      perWorker.forEach((tasks, w) => this.workers[w].postMessage({ batch, tasks, scale } satisfies WorkerRequest));
    });
  }

  /** Stops every worker and restores OpenBLAS's thread count; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.abortBarrier();
    await Promise.all(this.workers.map((w) => w.terminate()));
    native().blasThreads(this.savedBlasThreads);
  }

  private receive(reply: WorkerReply): void {
    const p = this.pending;
    if (!p || reply.batch !== p.batch) return;
    p.replies.push(reply);
    if (--p.waiting > 0) return;
    this.pending = undefined;
    let loss = 0;
    for (const l of this.shardLoss) loss += l;
    p.resolve({
      loss,
      nodes: p.replies.reduce((n, r) => n + r.nodes, 0),
      gradientFinite: p.replies.every((r) => r.finite),
    });
  }

  /** Wakes workers waiting at the barrier for a partner that will never come. */
  private abortBarrier(): void {
    Atomics.store(this.control, ABORTED, 1);
    Atomics.add(this.control, GENERATION, 1);
    Atomics.notify(this.control, GENERATION);
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    const p = this.pending;
    this.pending = undefined;
    p?.reject(error);
    // No thread may outlive a failed run.
    void this.close();
  }
}

/**
 * Waits until all `workers` have arrived (called by each worker once per
 * batch). Returns false when the pool aborted the run instead.
 */
export function barrier(control: Int32Array, workers: number): boolean {
  const generation = Atomics.load(control, GENERATION);
  if (Atomics.load(control, ABORTED)) return false;
  if (Atomics.add(control, ARRIVED, 1) === workers - 1) {
    Atomics.store(control, ARRIVED, 0);
    Atomics.add(control, GENERATION, 1);
    Atomics.notify(control, GENERATION);
    return true;
  }
  while (Atomics.load(control, GENERATION) === generation) Atomics.wait(control, GENERATION, generation);
  return !Atomics.load(control, ABORTED);
}

/**
 * Worker `worker` of `workers`'s share of one update, as [start, end) pairs
 * and their λs: a contiguous slice of the dense groups, and a contiguous
 * slice of `rows` (the ascending distinct rows of L the batch touched). The
 * shares partition the update, and AdaGrad is element-wise, so the bytes do
 * not depend on how it is shared out.
 */
export function updateShare(config: UpdateConfig, rows: Int32Array, worker: number, workers: number): { ranges: Int32Array; lambdas: Float32Array } {
  const denseStart = config.dense[0]?.start ?? 0;
  const denseEnd = config.dense[config.dense.length - 1]?.end ?? 0;
  const slice = (n: number) => [Math.floor((worker * n) / workers), Math.floor(((worker + 1) * n) / workers)];
  const [from, to] = slice(denseEnd - denseStart).map((x) => x + denseStart);
  const [rowFrom, rowTo] = slice(rows.length);
  const ranges: number[] = [];
  const lambdas: number[] = [];
  for (const g of config.dense) {
    const start = Math.max(g.start, from);
    const end = Math.min(g.end, to);
    if (start < end) ranges.push(start, end), lambdas.push(g.lambda);
  }
  const { offset, dim, lambda } = config.rows;
  for (let i = rowFrom; i < rowTo; i++) ranges.push(offset + rows[i] * dim, offset + (rows[i] + 1) * dim), lambdas.push(lambda);
  return { ranges: Int32Array.from(ranges), lambdas: Float32Array.from(lambdas) };
}
