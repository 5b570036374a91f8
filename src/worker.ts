/**
 * A training worker (src/pool.ts). For each minibatch the main thread posts
 * through shared memory, it compiles its shards from the shared tree table,
 * runs forward/backward on them with its own native workspace (reading the
 * parameters in place, adding each shard's gradient into that shard's shared
 * buffer), waits until every worker's shards are done, applies the AdaGrad
 * step to its share of the parameters, and counts itself done.
 *
 * It runs as one loop that blocks in Atomics.wait between batches and never
 * returns to its event loop until the pool closes.
 */
import { workerData } from 'node:worker_threads';
import { distinctSorted, TreeTable } from './batch';
import { createWorkspace, native, type Schedule } from './native';
import { aborted, barrier, DONE, SEQUENCE, updateShare, type WorkerInit } from './pool';

const init = workerData as WorkerInit;
const table = new TreeTable(init.table);
const workspace = createWorkspace();
const { control, trees, shardStart, dropout, scalars, shardWords, shardWordCount, shardLoss, workerNodes, workerFinite } = init.channel;
const shards = init.grads.length;
const stripe = Math.max(1, init.dims.vocab);
const u = init.update;

// From 0, the channel's first value: the first batch may be posted before this worker has started.
for (let seen = 0; ; ) {
  while (Atomics.load(control, SEQUENCE) === seen && !aborted(control)) Atomics.wait(control, SEQUENCE, seen);
  if (aborted(control)) break;
  seen = Atomics.load(control, SEQUENCE);

  // Shard s belongs to worker s mod workers; the split does not change the arithmetic (src/pool.ts).
  const mine: number[] = [];
  for (let s = init.worker; s < shards; s += init.workers) if (shardStart[s + 1] > shardStart[s]) mine.push(s);
  const compiled = mine.map((s) => table.compile(trees.subarray(shardStart[s], shardStart[s + 1])));
  const schedules: Schedule[] = compiled.map((schedule, i) => {
    const rate = dropout[2 * mine[i]];
    return rate > 0 ? { ...schedule, dropout: { rate, seed: dropout[2 * mine[i] + 1] } } : schedule;
  });
  // One native call for all of this worker's shards: the parameters are prepared once.
  const losses = workspace.forwardBackwardShards(
    init.params,
    mine.map((s) => init.grads[s]),
    init.dims,
    schedules,
  );
  let nodes = 0;
  mine.forEach((s, i) => {
    shardLoss[s] = losses[i];
    shardWords.set(compiled[i].words, s * stripe);
    shardWordCount[s] = compiled[i].words.length;
    nodes += compiled[i].left.length;
  });
  if (!barrier(control, init.workers)) break;

  // Every shard is done. A non-finite loss skips the update: the trainer stops on it.
  let finite = true;
  if (Array.from(shardLoss.subarray(0, shards)).every(Number.isFinite)) {
    const touched: number[] = [];
    for (let s = 0; s < shards; s++) for (const w of shardWords.subarray(s * stripe, s * stripe + shardWordCount[s])) touched.push(w);
    const { ranges, lambdas } = updateShare(u, distinctSorted(touched), init.worker, init.workers);
    finite = native().adagradStep(init.params, u.history, init.grads, ranges, lambdas, scalars[0], scalars[1], u.epsilon);
  }
  workerNodes[init.worker] = nodes;
  workerFinite[init.worker] = finite ? 1 : 0;
  Atomics.add(control, DONE, 1);
  Atomics.notify(control, DONE);
}
