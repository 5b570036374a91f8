/**
 * The worker-thread pool behind multi-threaded training.
 *
 * Exactness does not depend on the number of threads: every minibatch is cut
 * into a fixed number of shards (a training option, not the thread count),
 * each shard's gradient goes into a buffer of its own, and the trainer sums
 * the shard buffers in shard order. Threads only decide who computes which
 * shard, so 1, 2, 3 or 4 threads give the same bytes.
 *
 * Parameters and gradient buffers are SharedArrayBuffers: workers read the
 * parameters in place and write gradients in place; messages carry only tree
 * indices one way and losses and touched word ids the other.
 */
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { TreeTableData } from './batch';
import { native, type NativeDims, type Schedule } from './native';

/** What every worker receives once, at start (shared memory stays shared). */
export interface WorkerInit {
  params: Float32Array;
  grads: Float32Array[];
  table: TreeTableData;
  dims: NativeDims;
}

export interface WorkerRequest {
  batch: number;
  tasks: { shard: number; trees: Int32Array; dropout?: Schedule['dropout'] }[];
}

export interface ShardResult {
  shard: number;
  /** Summed loss of the shard's labelled nodes. */
  loss: number;
  nodes: number;
  /** Rows of L the shard's gradient touches, ascending. */
  words: Int32Array;
}

export interface WorkerReply {
  batch: number;
  results: ShardResult[];
}

export interface PoolOptions {
  threads: number;
  params: Float32Array;
  /** One gradient buffer per shard, each the size of `params`, all zero. */
  grads: Float32Array[];
  table: TreeTableData;
  dims: NativeDims;
  /** The worker's script; tests substitute one that fails. */
  workerScript?: string;
}

export class TrainingPool {
  private readonly workers: Worker[];
  private pending?: { batch: number; waiting: number; results: ShardResult[]; resolve: (r: ShardResult[]) => void; reject: (e: Error) => void };
  private failure?: Error;
  private batches = 0;
  private readonly savedBlasThreads: number;
  private closed = false;

  constructor(private readonly options: PoolOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
    for (const buffer of [options.params, ...options.grads]) {
      if (!(buffer.buffer instanceof SharedArrayBuffer)) throw new TypeError('parameters and gradients must live in SharedArrayBuffers');
    }
    // Load the addon here first: it sets OpenBLAS's environment, which only
    // the main thread's environment can do. Then one BLAS thread per worker.
    this.savedBlasThreads = native().blasThreads();
    native().blasThreads(1);
    const init: WorkerInit = { params: options.params, grads: options.grads, table: options.table, dims: options.dims };
    // Always the compiled worker (lib/worker.js), also when this module runs from src/ under vitest.
    const script = options.workerScript ?? path.resolve(__dirname, '..', 'lib', 'worker.js');
    this.workers = Array.from({ length: Math.min(options.threads, options.grads.length) }, () => {
      const worker = new Worker(script, { workerData: init });
      worker.on('message', (reply: WorkerReply) => this.receive(reply));
      worker.on('error', (error) => this.fail(error));
      worker.on('exit', (code) => {
        if (!this.closed) this.fail(new Error(`a training worker exited unexpectedly (exit code ${code})`));
      });
      return worker;
    });
  }

  get threads(): number {
    return this.workers.length;
  }

  /**
   * Computes the gradient of every shard (`shards[s]` = the table indices of
   * shard s's trees, under `dropout[s]` when given) into `grads[s]`; resolves
   * with the results in shard order.
   */
  run(shards: Int32Array[], dropout?: Schedule['dropout'][]): Promise<ShardResult[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error('the training pool is closed'));
    if (this.pending) return Promise.reject(new Error('the training pool is already running a batch'));
    if (shards.length !== this.options.grads.length) {
      return Promise.reject(new RangeError(`expected ${this.options.grads.length} shards, got ${shards.length}`));
    }
    const batch = this.batches++;
    return new Promise((resolve, reject) => {
      const perWorker = this.workers.map(() => [] as WorkerRequest['tasks']);
      shards.forEach((trees, shard) => {
        if (trees.length > 0) perWorker[shard % this.workers.length].push({ shard, trees, dropout: dropout?.[shard] });
      });
      const busy = perWorker.filter((tasks) => tasks.length > 0).length;
      this.pending = { batch, waiting: busy, results: [], resolve, reject };
      if (busy === 0) this.settle();
      perWorker.forEach((tasks, w) => {
        if (tasks.length > 0) this.workers[w].postMessage({ batch, tasks } satisfies WorkerRequest);
      });
    });
  }

  /** Stops every worker and restores OpenBLAS's thread count; safe to call twice. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
    native().blasThreads(this.savedBlasThreads);
  }

  private receive(reply: WorkerReply): void {
    const p = this.pending;
    if (!p || reply.batch !== p.batch) return;
    p.results.push(...reply.results);
    if (--p.waiting === 0) this.settle();
  }

  private settle(): void {
    const p = this.pending!;
    this.pending = undefined;
    // Empty shards (a last batch smaller than the shard count) contribute nothing.
    const byShard: ShardResult[] = this.options.grads.map((_, shard) => ({ shard, loss: 0, nodes: 0, words: new Int32Array(0) }));
    for (const r of p.results) byShard[r.shard] = r;
    p.resolve(byShard);
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
