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
  const results: WorkerReply['results'] = [];
  for (const task of request.tasks) {
    const schedule = table.compile(task.trees);
    const loss = workspace.forwardBackward(init.params, init.grads[task.shard], init.dims, schedule);
    results.push({ shard: task.shard, loss, nodes: schedule.left.length, words: schedule.words });
  }
  parentPort!.postMessage({ batch: request.batch, results } satisfies WorkerReply);
});
