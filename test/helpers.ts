import * as fs from 'node:fs';
import * as path from 'node:path';

/** The Stanford Sentiment Treebank beside the project (../shared/data/sst), or undefined when absent. */
export const SST_DIR = path.resolve(__dirname, '../../shared/data/sst');
export const HAVE_SST = fs.existsSync(path.join(SST_DIR, 'train.txt'));

export { randomTrees } from '../src/synthetic';
