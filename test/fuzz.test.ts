/**
 * A few thousand cases of each fuzzer (test/fuzz/) inside `npm test`, against
 * the TypeScript sources. The full campaigns run with `npm run fuzz`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as tree from '../src/tree';
import * as modelFile from '../src/model-file';
import * as model from '../src/model';
import * as vocab from '../src/vocab';
import * as random from '../src/random';
import * as synthetic from '../src/synthetic';
import { makeTmpDir, prepare, runCases, writeFailure, type CampaignStats, type FuzzApi, type FuzzKind } from './fuzz/oracle.js';
import { MODEL_CATEGORIES, TREE_CATEGORIES } from './fuzz/mutators.js';

const api: FuzzApi = { tree, modelFile, model, vocab, random, synthetic };
const ROOT = path.resolve(__dirname, '..');
const SEED = 1;
// Deep cases at full depth take a second or more each; the script runs them, the test keeps to 50k.
const MAX_DEPTH = 50_000;
const tmpDir = makeTmpDir();
afterAll(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

const prepared = { tree: prepare(api, 'tree', { seed: SEED, projectRoot: ROOT }), model: prepare(api, 'model', { seed: SEED, projectRoot: ROOT }) };

function campaign(kind: FuzzKind, count: number, testApi: FuzzApi = api, categories?: string[]): CampaignStats {
  return runCases(testApi, kind, { seed: SEED, count, prepared: prepared[kind], tmpDir, maxDepth: MAX_DEPTH, categories });
}

/** Failures as text, with their inputs written where `npm run fuzz -- --replay` can find them again. */
function explain(stats: CampaignStats): string {
  return stats.failures
    .slice(0, 10)
    .map((f) => {
      const input = writeFailure(api, path.join(ROOT, 'build/fuzz-failures'), f, prepared[f.kind], { maxDepth: MAX_DEPTH });
      return `seed ${f.seed} ${f.kind} case ${f.index} (${f.category}): ${f.problems.join('; ')}\n  input ${input}; replay: node test/fuzz/run.js --seed ${f.seed} --max-depth ${MAX_DEPTH} --replay ${f.kind}:${f.index}`;
    })
    .join('\n');
}

describe('fuzzing the tree reader', () => {
  it('3,000 mutated treebank lines and random inputs each give trees or a located TreeParseError, agreeing with the reference parser', () => {
    const stats = campaign('tree', 3000);
    expect(stats.failures, explain(stats)).toEqual([]);
    expect(stats.run).toBe(3000);
    // A fuzzer that stopped generating some kind of input, or whose inputs all parse (or all fail), tests little.
    for (const [name] of TREE_CATEGORIES) expect(stats.categories[name]?.run ?? 0, name).toBeGreaterThan(0);
    const totals = Object.values(stats.categories).reduce((a, c) => ({ parsed: a.parsed + c.parsed, rejected: a.rejected + c.rejected }), { parsed: 0, rejected: 0 });
    expect(totals.parsed).toBeGreaterThan(100);
    expect(totals.rejected).toBeGreaterThan(1000);
  });
});

describe('fuzzing the model loader', () => {
  it('2,000 damaged and hostile files each load a valid model or fail with a ModelFileError naming the file, without outsized allocations', () => {
    const stats = campaign('model', 2000);
    expect(stats.failures, explain(stats)).toEqual([]);
    for (const [name] of MODEL_CATEGORIES) expect(stats.categories[name]?.run ?? 0, name).toBeGreaterThan(0);
    expect(stats.categories.valid.parsed).toBeGreaterThan(0);
  });
});

describe('the fuzz oracle has teeth', () => {
  // Sabotaged versions of rntn that the campaigns above must catch; each stands for a class of bug.
  const withTree = (patch: Partial<typeof tree>): FuzzApi => ({ ...api, tree: { ...tree, ...patch } });
  const withModelFile = (patch: Partial<typeof modelFile>): FuzzApi => ({ ...api, modelFile: { ...modelFile, ...patch } });

  it('catches a reader that throws something other than TreeParseError', () => {
    const broken = withTree({
      parseTrees: (text, options) => {
        if (text.includes('\0')) throw new TypeError('NUL');
        return tree.parseTrees(text, options);
      },
    });
    expect(campaign('tree', 50, broken, ['nul']).failures.some((f) => f.problems.some((p) => p.includes('other than TreeParseError')))).toBe(true);
  });

  it('catches errors that point one column off', () => {
    const broken = withTree({
      parseTrees: (text, options) => {
        try {
          return tree.parseTrees(text, options);
        } catch (e) {
          if (!(e instanceof tree.TreeParseError)) throw e;
          throw new tree.TreeParseError(e.source, e.line, e.column + 1, e.expected, e.found);
        }
      },
    });
    expect(campaign('tree', 50, broken, ['paren-drop']).failures.some((f) => f.problems.some((p) => p.includes('the reference')))).toBe(true);
  });

  it('catches a reader that accepts unary nodes', () => {
    // Turning "(2 (3 x))" into "(2 (3 x) (3 x))" before parsing makes unary chains parse.
    const unaryToBinary = (text: string) => text.replace(/\((\d+) (\((\d+) ([^\s()]+)\))\)/g, '($1 $2 $2)');
    const broken = withTree({ parseTrees: (text, options) => tree.parseTrees(unaryToBinary(text), options) });
    expect(campaign('tree', 100, broken, ['unary']).failures.some((f) => f.problems.some((p) => p.includes('parsed what the reference rejects')))).toBe(true);
  });

  it('catches a loader that lets NaN through or throws a bare Error', () => {
    const passesNaN = withModelFile({
      decodeModelFile: (bytes, source) => {
        try {
          return modelFile.decodeModelFile(bytes, source);
        } catch (e) {
          if (e instanceof modelFile.ModelFileError && /finite/.test(e.message)) {
            const m = model.Model.create(new vocab.Vocabulary(['a']), { dim: 1, classes: 2 });
            m.params[0] = NaN;
            return { model: m, extraMetadata: {} };
          }
          throw e;
        }
      },
    });
    expect(campaign('model', 50, passesNaN, ['non-finite']).failures.some((f) => f.problems.some((p) => p.includes('loaded a file that breaks the contract')))).toBe(true);
    const bareError = withModelFile({
      decodeModelFile: (bytes, source) => {
        try {
          return modelFile.decodeModelFile(bytes, source);
        } catch (e) {
          throw e instanceof modelFile.ModelFileError && /header/.test(e.message) ? new Error(e.message) : e;
        }
      },
    });
    expect(campaign('model', 50, bareError, ['header-length']).failures.some((f) => f.problems.some((p) => p.includes('other than ModelFileError')))).toBe(true);
  });

  it('catches a loader that allocates what the header claims', () => {
    const greedy = withModelFile({
      decodeModelFile: (bytes, source) => {
        // Stands for a reader that sizes a buffer from the header before checking it against the file.
        const claimed = Number(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readBigUInt64LE(0) % 2n ** 28n);
        if (claimed > bytes.length) new Uint8Array(claimed).fill(1, 0, 1);
        return modelFile.decodeModelFile(bytes, source);
      },
    });
    expect(campaign('model', 50, greedy, ['header-length']).failures.some((f) => f.problems.some((p) => p.includes('grew arrayBuffers')))).toBe(true);
  });
});
