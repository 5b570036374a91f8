// Types for test/fuzz.test.ts; oracle.js is plain CommonJS so that the fuzz script runs without a build step of its own.

/** The rntn modules under test: `src/` from vitest, `lib/` from run.js. */
export interface FuzzApi {
  tree: typeof import('../../src/tree');
  modelFile: typeof import('../../src/model-file');
  model: typeof import('../../src/model');
  vocab: typeof import('../../src/vocab');
  random: typeof import('../../src/random');
  synthetic: typeof import('../../src/synthetic');
}

export type FuzzKind = 'tree' | 'model';

export interface Prepared {
  corpus?: { lines: string[]; source: string; synthetic: boolean };
  pool?: unknown[];
}

export interface CategoryStats {
  run: number;
  /** Parsed (trees) or loaded (models). */
  parsed: number;
  rejected: number;
  failed: number;
  ms: number;
}

export interface Failure {
  kind: FuzzKind;
  seed: number;
  index: number;
  category: string;
  note?: string;
  problems: string[];
}

export interface CampaignStats {
  kind: FuzzKind;
  seed: number;
  run: number;
  categories: Record<string, CategoryStats>;
  failures: Failure[];
  slowest: { index: number; category: string; ms: number; maxCallMs: number; size: number; note?: string } | null;
  slowestCallMs: number;
  maxArrayBuffers: number;
  maxRss: number;
  longestMessage: number;
  ms: number;
}

export interface CaseResult {
  outcome: 'parsed' | 'rejected' | 'loaded' | 'harness-error';
  ms: number;
  maxCallMs: number;
  problems: string[];
}

export function prepare(api: FuzzApi, kind: FuzzKind, options: { seed: number; projectRoot: string }): Prepared;
export function makeTmpDir(): string;
export function runCases(
  api: FuzzApi,
  kind: FuzzKind,
  options: {
    seed: number;
    start?: number;
    count: number;
    prepared: Prepared;
    tmpDir: string;
    maxDepth?: number;
    caseLimitMs?: number;
    /** Pins case i to categories[i % n]. */
    categories?: string[];
    onCase?: (index: number) => void;
    onFailure?: (failure: Failure) => void;
    onProgress?: (stats: CampaignStats) => void;
  },
): CampaignStats;
export function makeCase(api: FuzzApi, kind: FuzzKind, prepared: Prepared, seed: number, index: number, options?: { maxDepth?: number; category?: string }): unknown;
export function runCase(api: FuzzApi, kind: FuzzKind, c: unknown, tmpDir: string): CaseResult;
export function writeFailure(api: FuzzApi, dir: string, failure: Failure, prepared: Prepared, options?: { maxDepth?: number }): string;
