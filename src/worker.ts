/**
 * A training worker: compiles its shards of each minibatch from the shared
 * tree table and runs forward/backward on them with its own native
 * workspace, reading the parameters in place and adding each shard's
 * gradient into that shard's shared buffer. The main thread (src/pool.ts)
 * sums the shard buffers in a fixed order and applies the update.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { TreeTable } from './batch';
import { createWorkspace } from './native';
import type { WorkerInit, WorkerReply, WorkerRequest } from './pool';

const init = workerData as WorkerInit;
const table = new TreeTable(init.table);
const workspace = createWorkspace();

parentPort!.on('message', (request: WorkerRequest) => {
  const schedules = request.tasks.map((task) => ({ ...table.compile(task.trees), dropout: task.dropout }));
  // One native call for all of this worker's shards: the parameters are prepared once.
  const grads = request.tasks.map((task) => init.grads[task.shard]);
  const losses = workspace.forwardBackwardShards(init.params, grads, init.dims, schedules);
  const results: WorkerReply['results'] = request.tasks.map((task, i) => ({
    shard: task.shard,
    loss: losses[i],
    nodes: schedules[i].left.length,
    words: schedules[i].words,
  }));
  parentPort!.postMessage({ batch: request.batch, results } satisfies WorkerReply);
});
