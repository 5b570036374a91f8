#!/usr/bin/env node
// Trains on SST train with dev selection and evaluates SST test, for several
// seeds, and prints the four Table 1 metrics per seed, their mean, the wall
// time and the paper's row beside them (Socher et al. 2013, RNTN).
//
//   node bench/sst-train.js [--seeds 1,2,3] [--epochs 40] [--dim 25] [--batch 27] [--leaf identity|tanh]
//                           [--lr 0.01] [--adagrad-reset 1 (epochs; 0: never)] [--lambda-w 1e-3] [--lambda-v 0.3] [--lambda-ws 1e-4] [--lambda-l 1e-4]
//                           [--patience K] [--min-count 2] [--threads N] [--dropout R] [--root-weight W] [--lr-drop-epoch 16 (0: never)] [--lr-drop-factor 0.1] [--average-from 16 (0: never)]
//                           [--polarity-weight B (0: none)] [--root-polarity-weight B (default 1, the library default)] [--teacher MODEL ... | --teachers K] [--distill-weight 0.5] [--json]
//                           [--save-dir DIR] [--teachers-from DIR]
//
// Distillation (docs/training.md): --teacher names teacher model files shared
// by every seed; --teachers K trains, for each seed s, K default models with
// seeds 100·s + 1 … 100·s + K first (into a temporary directory), distils the
// seed's model from them, and counts their training in the seed's wall time:
// the whole recipe, end to end.
//
// --save-dir keeps what was trained (seed-S.safetensors, and with --teachers
// seed-S-teacher-K.safetensors), so that a later question about the same
// runs (per-class errors, ensembles: `rntn eval --model … --json`) needs no
// retraining. --teachers K --teachers-from DIR takes each seed's teachers
// from an earlier run's --save-dir instead of training them (the same
// models: training is deterministic), to try students on the same teachers;
// the wall time then counts the student alone.
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { parseArgs } = require('node:util');
const { lib, SST_DIR, numberFlag, numberList, requireTreebank } = require('./common');
const { train, DEFAULT_TRAIN_OPTIONS } = lib('train');
const { evaluate, evaluateEnsemble } = lib('evaluate');
const { saveModel, loadModel } = lib('model-file');
const { describeBlas } = lib('native');
const { readTrees } = lib('tree');

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1,2,3' },
    epochs: { type: 'string', default: '40' },
    dim: { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.dim) },
    batch: { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.batchSize) },
    leaf: { type: 'string', default: DEFAULT_TRAIN_OPTIONS.leaf },
    lr: { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.learningRate) },
    'adagrad-reset': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.adagradResetEpochs) },
    'lambda-w': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.lambda.W) },
    'lambda-v': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.lambda.V) },
    'lambda-ws': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.lambda.Ws) },
    'lambda-l': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.lambda.L) },
    patience: { type: 'string' },
    'min-count': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.minCount) },
    'average-from': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.averageFrom ?? 0) },
    json: { type: 'boolean', default: false },
    threads: { type: 'string' },
    dropout: { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.dropout) },
    'root-weight': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.rootWeight) },
    'polarity-weight': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.polarityWeight ?? 0) },
    'root-polarity-weight': { type: 'string' },
    'lr-drop-epoch': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.learningRateDrop?.epoch ?? 0) },
    'lr-drop-factor': { type: 'string', default: String(DEFAULT_TRAIN_OPTIONS.learningRateDrop?.factor ?? 0.1) },
    teacher: { type: 'string', multiple: true },
    teachers: { type: 'string' },
    'distill-weight': { type: 'string', default: '0.5' },
    sst: { type: 'string', default: SST_DIR },
    'save-dir': { type: 'string' },
    'teachers-from': { type: 'string' },
  },
});
requireTreebank(path.join(values.sst, 'train.txt'));
const [trainTrees, devTrees, testTrees] = ['train', 'dev', 'test'].map((s) => readTrees(path.join(values.sst, `${s}.txt`)));
// Ranges are train()'s to check (a RangeError naming the option); these only refuse blanks and non-numbers.
const num = (name) => numberFlag(name, values[name]);
const dropEpoch = num('lr-drop-epoch');
const options = {
  ...DEFAULT_TRAIN_OPTIONS,
  epochs: num('epochs'),
  dim: num('dim'),
  batchSize: num('batch'),
  leaf: values.leaf,
  learningRate: num('lr'),
  adagradResetEpochs: num('adagrad-reset'),
  lambda: { W: num('lambda-w'), V: num('lambda-v'), Ws: num('lambda-ws'), L: num('lambda-l') },
  patience: values.patience === undefined ? undefined : num('patience'),
  minCount: num('min-count'),
  dropout: num('dropout'),
  rootWeight: num('root-weight'),
  polarityWeight: num('polarity-weight'),
  rootPolarityWeight: values['root-polarity-weight'] === undefined ? DEFAULT_TRAIN_OPTIONS.rootPolarityWeight : num('root-polarity-weight'),
  averageFrom: num('average-from'),
  learningRateDrop: dropEpoch === 0 ? undefined : { epoch: dropEpoch, factor: num('lr-drop-factor') },
  threads: values.threads === undefined ? DEFAULT_TRAIN_OPTIONS.threads : num('threads'),
  distill: values.teacher ? { weight: num('distill-weight'), teachers: values.teacher } : undefined,
};
const teachersPerSeed = values.teachers === undefined ? 0 : numberFlag('teachers', values.teachers, { integer: true, min: 0 });
if (teachersPerSeed > 0 && values.teacher) throw new Error('--teacher and --teachers exclude each other');
const saveDir = values['save-dir'];
const teachersFrom = values['teachers-from'];
if (teachersFrom && !(teachersPerSeed > 0)) throw new Error('--teachers-from needs --teachers K');
if (saveDir) fs.mkdirSync(saveDir, { recursive: true });
const PAPER = { allFine: 0.807, rootFine: 0.457, allBinary: 0.876, rootBinary: 0.854 };
const KEYS = ['allFine', 'rootFine', 'allBinary', 'rootBinary'];
const pct = (x) => (100 * x).toFixed(1);

(async () => {
  console.log(describeBlas());
  console.log(`options: ${JSON.stringify({ ...options, seed: undefined })}`);
  const rows = [];
  for (const seed of numberList('seeds', values.seeds, { integer: true })) {
    const started = Date.now();
    let distill = options.distill;
    let ensemble;
    let dir;
    if (teachersPerSeed > 0) {
      const teachers = [];
      const files = [];
      if (teachersFrom) {
        for (let k = 1; k <= teachersPerSeed; k++) {
          files.push(path.join(teachersFrom, `seed-${seed}-teacher-${k}.safetensors`));
          teachers.push(loadModel(files[k - 1]));
        }
      } else {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-teachers-'));
        for (let k = 1; k <= teachersPerSeed; k++) {
          const teacher = await train(trainTrees, devTrees, { ...DEFAULT_TRAIN_OPTIONS, threads: options.threads, seed: 100 * seed + k });
          teachers.push(teacher.model);
          files.push(path.join(dir, `teacher-${k}.safetensors`));
          saveModel(teacher.model, files[k - 1]);
          if (saveDir) fs.copyFileSync(files[k - 1], path.join(saveDir, `seed-${seed}-teacher-${k}.safetensors`));
        }
      }
      ensemble = evaluateEnsemble(teachers, testTrees);
      distill = { weight: num('distill-weight'), teachers: files };
    }
    // The teachers' files are read once, when the student's training starts.
    const result = await train(trainTrees, devTrees, { ...options, seed, distill }).finally(() => dir && fs.rmSync(dir, { recursive: true, force: true }));
    if (saveDir) saveModel(result.model, path.join(saveDir, `seed-${seed}.safetensors`));
    const test = evaluate(result.model, testTrees);
    const best = result.records.reduce((a, r) => (r.best ? r : a), undefined);
    // The best dev epoch is a maximum over many noisy evaluations, so it also
    // rewards runs whose dev accuracy merely swings more; the mean over the
    // epochs from the learning-rate drop on (the second half without one) is
    // a steadier dev figure for comparing settings. (From averageFrom on,
    // the records' dev figures are those of the averaged models.)
    const from = options.learningRateDrop?.epoch ?? Math.ceil(result.epochs / 2);
    const late = result.records.filter((r) => r.epoch >= from && r.dev).map((r) => r.dev.rootFine);
    const devRootLate = late.length > 0 ? late.reduce((a, b) => a + b, 0) / late.length : NaN;
    const row = { seed, ...Object.fromEntries(KEYS.map((k) => [k, test[k]])), teachers: ensemble && Object.fromEntries(KEYS.map((k) => [k, ensemble[k]])), bestEpoch: best?.epoch, devRoot: result.bestDev.rootFine, devRootLate, devFrom: from, epochs: result.epochs, seconds: (Date.now() - started) / 1000 };
    rows.push(row);
    if (values.json) console.log(JSON.stringify(row));
    else console.log(`seed ${seed}: test all ${pct(row.allFine)} root ${pct(row.rootFine)} all-bin ${pct(row.allBinary)} root-bin ${pct(row.rootBinary)} | dev root ${pct(row.devRoot)} at epoch ${row.bestEpoch}/${row.epochs}, mean from epoch ${from} ${pct(row.devRootLate)} | ${row.seconds.toFixed(0)} s`);
    if (ensemble && !values.json) console.log(`  its ${teachersPerSeed} teachers' ensemble: test all ${pct(ensemble.allFine)} root ${pct(ensemble.rootFine)} all-bin ${pct(ensemble.allBinary)} root-bin ${pct(ensemble.rootBinary)}`);
  }
  const mean = Object.fromEntries(KEYS.map((k) => [k, rows.reduce((s, r) => s + r[k], 0) / rows.length]));
  console.log('\n| run | all 5-class | root 5-class | all binary | root binary | wall time |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(`| seed ${r.seed} | ${pct(r.allFine)} | ${pct(r.rootFine)} | ${pct(r.allBinary)} | ${pct(r.rootBinary)} | ${r.seconds.toFixed(0)} s, ${options.threads} thread(s) |`);
  console.log(`| mean | ${pct(mean.allFine)} | ${pct(mean.rootFine)} | ${pct(mean.allBinary)} | ${pct(mean.rootBinary)} | |`);
  console.log(`| paper (RNTN) | ${pct(PAPER.allFine)} | ${pct(PAPER.rootFine)} | ${pct(PAPER.allBinary)} | ${pct(PAPER.rootBinary)} | |`);
  const devMean = (k) => pct(rows.reduce((s, r) => s + r[k], 0) / rows.length);
  console.log(`\ndev root 5-class, mean of seeds: best epoch ${devMean('devRoot')}, mean over epochs ≥ ${rows[0]?.devFrom} ${devMean('devRootLate')}`);
})();
