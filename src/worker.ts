/**
 * A training worker (src/pool.ts): compiles its shards of each minibatch from
 * the shared tree table, runs forward/backward on them with its own native
 * workspace, reading the parameters in place and adding each shard's gradient
 * into that shard's shared buffer; then, once every worker's shards are done,
 * applies the AdaGrad step to its share of the parameters.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { distinctSorted, TreeTable } from './batch';
import { createWorkspace, native } from './native';
import { barrier, updateShare, type WorkerInit, type WorkerReply, type WorkerRequest } from './pool';

const init = workerData as WorkerInit;
const table = new TreeTable(init.table);
const workspace = createWorkspace();
const shards = init.grads.length;
const stripe = Math.max(1, init.dims.vocab);

parentPort!.on('message', (request: WorkerRequest) => {
  const schedules = request.tasks.map((task) => ({ ...table.compile(task.trees), dropout: task.dropout }));
  // One native call for all of this worker's shards: the parameters are prepared once.
  const grads = request.tasks.map((task) => init.grads[task.shard]);
  const losses = workspace.forwardBackwardShards(init.params, grads, init.dims, schedules);
  let nodes = 0;
  request.tasks.forEach((task, i) => {
    init.shardLoss[task.shard] = losses[i];
    init.shardWords.set(schedules[i].words, task.shard * stripe);
    init.shardWordCount[task.shard] = schedules[i].words.length;
    nodes += schedules[i].left.length;
  });
  // Aborted: the pool is closing this worker; there is no one left to reply to.
  if (!barrier(init.control, init.workers)) return;

  let lossFinite = true;
  for (let s = 0; s < shards; s++) if (!Number.isFinite(init.shardLoss[s])) lossFinite = false;
  let finite = true;
  if (lossFinite) {
    const touched: number[] = [];
    for (let s = 0; s < shards; s++) {
      const words = init.shardWords.subarray(s * stripe, s * stripe + init.shardWordCount[s]);
      for (const w of words) touched.push(w);
    }
    const { ranges, lambdas } = updateShare(init.update, distinctSorted(touched), init.worker, init.workers);
    const u = init.update;
    finite = native().adagradStep(init.params, u.history, init.grads, ranges, lambdas, request.scale, u.learningRate, u.epsilon);
  }
  parentPort!.postMessage({ batch: request.batch, nodes, finite } satisfies WorkerReply);
});
