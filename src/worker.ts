/**
 * A training worker (src/pool.ts). For each minibatch the main thread posts
 * through shared memory, it claims shards one at a time until none is left,
 * compiles each from the shared tree table and runs forward/backward on it
 * with its own native workspace (reading the parameters and the pool's
 * prepared parameters in place, adding the shard's gradient but ∂V and ∂W
 * into the shard's shared buffer, and marking the shard ready as soon as it
 * is done), claims shards' weight gradients until none is left, waits until
 * every worker is done, applies the AdaGrad step to its share of the
 * parameters, rebuilds its units of the prepared parameters, and counts
 * itself done.
 *
 * It runs as one loop that waits (spinning briefly, then in Atomics.wait;
 * src/pool.ts, waitWhileEqual) between phases and batches and never returns
 * to its event loop until the pool closes. Between two batches it
 * waits for nothing but the other workers' updates: the main thread posts
 * ahead.
 */
import { workerData } from 'node:worker_threads';
import { sortDistinct, TreeTable } from './batch';
import { createWorkspace, native, weightGradientParts, type Schedule } from './native';
import { aborted, barrier, COMPLETED, NEVER, POSTED, READIED, SLOTS, updateShare, WAKE_AT, waitWhileEqual, WOKEN, type WorkerInit } from './pool';

const init = workerData as WorkerInit;
const table = new TreeTable(init.table);
const workspace = createWorkspace();
const { control, shardNext, trees, shardStart, dropout, scale, learningRate, shardWords, shardWordCount, shardLoss, shardInternal, shardReady, taskClaimed, workerNodes, workerFinite } =
  init.channel;
const S = init.grads.length;
const W = init.workers;
const batchSize = trees.length / SLOTS;
const stripe = Math.max(1, init.dims.vocab);
// The shards' touched rows, gathered for the update (sortDistinct works in place).
const touched = new Int32Array(S * stripe);
const u = init.update;
const { firstUnit, endUnit, lambdaV, lambdaW } = init.share;

// Weight-gradient task t is part t mod P of shard ⌊t / P⌋ (rntn.h, kWeightGradientParts).
// This worker looks for tasks to claim in this order: those of the shards it computed first.
const P = weightGradientParts();
const tasks = Array.from({ length: S * P }, (_, t) => t);
const claimOrder = (mine: number[]) => [...mine.flatMap((s) => tasks.slice(s * P, (s + 1) * P)), ...tasks];

/** Blocks until control[index] ≥ value; false when the pool closed instead. */
function waitFor(index: number, value: number): boolean {
  for (;;) {
    if (aborted(control)) return false;
    const now = Atomics.load(control, index);
    if (now >= value) return true;
    waitWhileEqual(control, index, now, init.spinMs);
  }
}

// Batch n uses slot n mod SLOTS of the channel's per-batch arrays (src/pool.ts).
for (let n = 1; ; n++) {
  // Posted, and every worker has applied its share of batch n − 1's update (the parameters and their prepared form are final).
  if (!waitFor(POSTED, n) || !waitFor(COMPLETED, (n - 1) * W)) break;
  const slot = n % SLOTS;
  const start = (s: number) => shardStart[slot * (S + 1) + s];

  // Shards are claimed in order from a per-batch counter (shardNext): a
  // worker whose core runs faster takes more of them. Who computes a shard
  // does not change its bytes. Against shards owned round-robin (worker s
  // mod workers), the claiming waited less for shards in the claim loop
  // below (instrumented workers, 3 runs of 3 epochs each at 2 threads: 47-62
  // ms against 47-154) and trained 2 threads a median 1.031 and 1.044 times
  // faster (bench/compare-trainers.js, 16 rounds each, 11 and 12 of 16
  // faster; 1 thread 1.004, 10 rounds). Session 5 had measured the claiming
  // slower (0.955), when each shard's ∂V and ∂W, 250 KB, went into its
  // gradient buffer, which a fixed owner kept in its cache; they now go to
  // the packed buffers, which any worker reads.
  //
  // A native call per shard, each shard marked ready when done: another
  // worker out of work of its own can take the shard's weight gradient
  // while this one computes the next (instrumented workers, 3 epochs at 2
  // threads: waiting for shards in the claim loop 150-170 ms → 60-120). The
  // prepared parameters are the pool's, so the calls cost no more than one.
  let nodes = 0;
  const mine: number[] = [];
  for (;;) {
    const s = Atomics.add(shardNext, slot, 1);
    if (s >= S) break;
    if (start(s + 1) > start(s)) {
      mine.push(s);
      const compiled = table.compile(trees.subarray(slot * batchSize + start(s), slot * batchSize + start(s + 1)), init.lossWeights);
      const mask = 2 * (slot * S + s); // the shard's [rate, seed] in `dropout`
      const schedule: Schedule = dropout[mask] > 0 ? { ...compiled, dropout: { rate: dropout[mask], seed: dropout[mask + 1] } } : compiled;
      const [loss] = workspace.forwardBackwardShards(init.params, [init.grads[s]], init.dims, [schedule], [init.deferred[s]], init.prepared);
      shardLoss[slot * S + s] = loss;
      shardWords.set(compiled.words, s * stripe);
      shardWordCount[s] = compiled.words.length;
      shardInternal[slot * S + s] = compiled.left.length - compiled.levelStart[1];
      nodes += compiled.left.length;
    } else {
      // An empty shard (a last batch smaller than the shard count): no words, no loss, no weight gradient.
      shardWordCount[s] = 0;
      shardLoss[slot * S + s] = 0;
      shardInternal[slot * S + s] = 0;
    }
    Atomics.store(shardReady, s, n);
    Atomics.add(control, READIED, 1);
    Atomics.notify(control, READIED);
  }

  // The weight-gradient tasks, each to whichever worker asks first once the
  // shard is done: a worker whose core ran faster through its shards takes
  // more of them. Where each is computed does not change its bytes (rntn.h,
  // packedWeightGradient).
  const order = claimOrder(mine);
  let claimed = true;
  for (;;) {
    const readied = Atomics.load(control, READIED);
    let task = -1;
    let waiting = false; // an unclaimed task's shard is not ready yet
    for (const t of order) {
      const claim = Atomics.load(taskClaimed, t);
      if (claim >= n) continue;
      if (Atomics.load(shardReady, Math.floor(t / P)) < n) waiting = true;
      else if (Atomics.compareExchange(taskClaimed, t, claim, n) === claim) {
        task = t;
        break;
      }
    }
    if (task >= 0) {
      const s = Math.floor(task / P);
      // Also with no internal nodes: the shard's block is then zeroed, not left from an earlier batch.
      workspace.packedWeightGradient(init.deferred[s], shardInternal[slot * S + s], init.packed[s], init.dims, task % P);
    } else if (!waiting) {
      break;
    } else if (aborted(control)) {
      claimed = false;
      break;
    } else {
      waitWhileEqual(control, READIED, readied, init.spinMs);
    }
  }
  // Two coupling points per batch (here, and COMPLETED before the next one).
  // Letting the last worker to arrive apply the whole update instead, so the
  // others wait once, measured slower: 6 paired 3-epoch runs at 2 threads,
  // median 0.87 (docs/performance.md).
  if (!claimed || !barrier(control, W, init.spinMs)) break;

  // Every shard is done. A non-finite loss skips the update: the trainer stops on it.
  let lossFinite = true;
  for (let s = 0; s < S; s++) lossFinite &&= Number.isFinite(shardLoss[slot * S + s]);
  let finite = true;
  if (lossFinite) {
    // The touched rows as the merge of the shards' sorted lists instead (its
    // JavaScript took ~13 µs a batch instead of ~33) made 2-thread training
    // slower, not faster: bench/compare-trainers.js, 8 rounds, median 0.896,
    // 0 of 8 faster, the same bytes. Not understood; not kept.
    let gathered = 0;
    for (let s = 0; s < S; s++) {
      touched.set(shardWords.subarray(s * stripe, s * stripe + shardWordCount[s]), gathered);
      gathered += shardWordCount[s];
    }
    const { ranges, lambdas } = updateShare(u, init.share, sortDistinct(touched.subarray(0, gathered)), init.worker, W);
    finite = native().adagradStep(init.params, u.history, init.grads, ranges, lambdas, scale[slot], learningRate[slot], u.epsilon);
    if (endUnit > firstUnit) {
      // This worker's units of V and W, stepped from the shards' packed weight gradients summed in
      // shard order (the order adagradStep sums the shards' buffers in: the same bytes as unpacking
      // each shard's into its buffer, which cost ~6 % of a thread's time), then rebuilt.
      const lr = learningRate[slot];
      const unitsFinite = native().adagradPackedStep(init.params, u.history, init.packed, init.dims, firstUnit, endUnit, lambdaV, lambdaW, scale[slot], lr, u.epsilon);
      finite = finite && unitsFinite;
      native().prepareParameters(init.params, init.dims, init.prepared, firstUnit, endUnit);
    }
  }
  workerNodes[slot * W + init.worker] = nodes;
  workerFinite[slot * W + init.worker] = finite ? 1 : 0;
  const completed = Atomics.add(control, COMPLETED, 1) + 1;
  Atomics.notify(control, COMPLETED);
  const wakeAt = Atomics.load(control, WAKE_AT);
  if (completed >= wakeAt && Atomics.compareExchange(control, WAKE_AT, wakeAt, NEVER) === wakeAt) {
    Atomics.add(control, WOKEN, 1);
    Atomics.notify(control, WOKEN);
  }
}
