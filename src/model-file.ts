/**
 * The model-file contract of DESIGN.md on top of the safetensors codec:
 * tensors `L, W, b, V, Ws, bs` (F32, row-major, shapes as in "The model"),
 * and string metadata `vocab` (a JSON array, index = word id), `dim`,
 * `classes`, `leaf` and `format`.
 *
 * The loader accepts any file that follows the contract, not just ours: other
 * implementations may order tensors differently, skip header padding, write
 * F64, or leave out the hyperparameters that the shapes already determine.
 */
import { LeafActivation, Model, ModelConfig, ParameterLayout, TensorName } from './model';
import { readFileNamed, writeFileAtomic } from './files';
import { DecodedTensor, SafetensorsError, decodeSafetensors, encodeSafetensors, excerpt } from './safetensors';
import { Vocabulary } from './vocab';

/** The value of the `format` metadata key that this module writes. */
export const MODEL_FORMAT = 'rntn/1';

/** The order tensors are written in; any order loads. */
export const MODEL_TENSOR_ORDER: readonly TensorName[] = ['L', 'W', 'b', 'V', 'Ws', 'bs'];

/** Metadata keys that the model itself determines; extra metadata may not use them. */
export const RESERVED_METADATA_KEYS: readonly string[] = ['vocab', 'dim', 'classes', 'leaf', 'format'];

/**
 * A file that is not a valid rntn model, whether it breaks the safetensors
 * format or the model contract. The message starts with the file's name.
 */
export class ModelFileError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelFileError';
  }
}

/** A model file's contents: the model, and the metadata it does not determine (what `encodeModel` calls extra). */
export interface DecodedModelFile {
  model: Model;
  extraMetadata: Record<string, string>;
}

/** The bytes of a model file. `extraMetadata` (e.g. training settings) is stored alongside the contract's keys. */
export function encodeModel(model: Model, extraMetadata: Record<string, string> = {}): Buffer {
  for (const [key, value] of Object.entries(extraMetadata)) {
    if (RESERVED_METADATA_KEYS.includes(key)) {
      throw new RangeError(`extra metadata may not set ${JSON.stringify(key)}: the model determines it`);
    }
    if (typeof value !== 'string') throw new TypeError(`extra metadata ${JSON.stringify(key)} must be a string`);
  }
  const { dim, classes, leaf } = model.config;
  const metadata: Record<string, string> = {
    vocab: JSON.stringify(model.vocab.words),
    dim: String(dim),
    classes: String(classes),
    leaf,
    format: MODEL_FORMAT,
    ...extraMetadata,
  };
  const tensors: Parameters<typeof encodeSafetensors>[0] = {};
  for (const name of MODEL_TENSOR_ORDER) {
    tensors[name] = { dtype: 'F32', shape: [...model.layout.shapes[name]], data: model.tensors[name] };
  }
  return encodeSafetensors(tensors, metadata);
}

/** Writes a model file atomically: a crash mid-save leaves the previous file intact. */
export function saveModel(model: Model, path: string, extraMetadata?: Record<string, string>): void {
  writeFileAtomic(path, encodeModel(model, extraMetadata));
}

/** Reads and validates a model file; throws {@link ModelFileError} naming `path` when it breaks the contract. */
export function loadModel(path: string): Model {
  return decodeModel(readFileNamed(path, 'model'), path);
}

/** Like {@link loadModel}, also returning the metadata beyond the contract's keys (e.g. training settings). */
export function loadModelFile(path: string): DecodedModelFile {
  return decodeModelFile(readFileNamed(path, 'model'), path);
}

export function decodeModel(bytes: Uint8Array, source: string): Model {
  return decodeModelFile(bytes, source).model;
}

/**
 * Validates a model file's bytes and builds the model. `source` names the file
 * in error messages.
 */
export function decodeModelFile(bytes: Uint8Array, source: string): DecodedModelFile {
  const fail = (message: string): never => {
    throw new ModelFileError(`${source}: ${message}`);
  };
  let decoded;
  try {
    decoded = decodeSafetensors(bytes, source);
  } catch (e) {
    // One error class for the whole module, so callers need not know about the codec.
    if (e instanceof SafetensorsError) throw new ModelFileError(e.message, { cause: e });
    throw e;
  }
  const { tensors, metadata } = decoded;

  const missing = MODEL_TENSOR_ORDER.filter((name) => !tensors.has(name));
  if (missing.length > 0) {
    fail(`missing tensor${missing.length > 1 ? 's' : ''} ${missing.join(', ')}; a model file holds ${MODEL_TENSOR_ORDER.join(', ')}`);
  }
  const unknown = [...tensors.keys()].filter((name) => !(MODEL_TENSOR_ORDER as readonly string[]).includes(name));
  if (unknown.length > 0) {
    // A file may hold thousands of extra tensors; naming a few is enough and keeps the message short.
    const shown = unknown.slice(0, 5).map((n) => JSON.stringify(n.length > 40 ? `${excerpt(n, 40)}…` : n));
    const more = unknown.length > 5 ? ` and ${unknown.length - 5} more` : '';
    fail(`unexpected tensor${unknown.length > 1 ? 's' : ''} ${shown.join(', ')}${more}; a model file holds only ${MODEL_TENSOR_ORDER.join(', ')}`);
  }
  const get = (name: TensorName): DecodedTensor => tensors.get(name)!;
  for (const name of MODEL_TENSOR_ORDER) {
    const { dtype } = get(name);
    if (dtype !== 'F32' && dtype !== 'F64') fail(`tensor ${name} has dtype ${dtype}; expected F32 (or F64)`);
  }

  // d and C come from the biases, the one-dimensional tensors; everything else must agree with them.
  // Capped: a valid safetensors tensor may still have a million dims of 1, and the message should stay readable.
  const shapeText = (shape: readonly number[]) =>
    shape.length <= 8 ? `[${shape.join(', ')}]` : `[${shape.slice(0, 8).join(', ')}, … (${shape.length} dims)]`;
  const b = get('b').shape;
  if (b.length !== 1 || b[0] < 1) fail(`tensor b has shape ${shapeText(b)}; expected [d] with d >= 1`);
  const d = b[0];
  const bs = get('bs').shape;
  if (bs.length !== 1 || bs[0] < 2) fail(`tensor bs has shape ${shapeText(bs)}; expected [C] with C >= 2 classes`);
  const C = bs[0];
  const L = get('L').shape;
  if (L.length !== 2 || L[0] < 1 || L[1] !== d) {
    fail(`tensor L has shape ${shapeText(L)}; expected [vocabulary size, ${d}] (d = ${d} from b)`);
  }
  const expected: Record<Exclude<TensorName, 'b' | 'bs' | 'L'>, number[]> = {
    W: [d, 2 * d],
    V: [d, 2 * d, 2 * d],
    Ws: [C, d],
  };
  for (const [name, shape] of Object.entries(expected)) {
    const actual = get(name as TensorName).shape;
    if (actual.length !== shape.length || actual.some((n, i) => n !== shape[i])) {
      fail(`tensor ${name} has shape ${shapeText(actual)}; expected ${shapeText(shape)} (d = ${d} from b, C = ${C} from bs)`);
    }
  }

  for (const [key, value] of [['dim', d], ['classes', C]] as const) {
    const text = metadata[key];
    if (text === undefined) continue;
    if (!/^[0-9]+$/.test(text)) fail(`metadata ${key} is ${JSON.stringify(text)}; expected a decimal integer`);
    if (Number(text) !== value) fail(`metadata ${key} is ${text} but the tensor shapes say ${value}`);
  }

  const leafText = metadata.leaf ?? 'identity';
  if (leafText !== 'identity' && leafText !== 'tanh') {
    fail(`metadata leaf is ${JSON.stringify(leafText)}; expected "identity" or "tanh"`);
  }
  const leaf = leafText as LeafActivation;

  // Other programs may write a format of their own (e.g. "pt"); only a different rntn version is a problem.
  const format = metadata.format;
  if (format !== undefined && format.startsWith('rntn/') && format !== MODEL_FORMAT) {
    fail(`metadata format is ${JSON.stringify(format)}; this version of rntn reads ${MODEL_FORMAT}`);
  }

  const words = parseVocabulary(metadata.vocab, L[0], fail);

  const layout = new ParameterLayout(d, C, words.length);
  const params = new Float32Array(layout.size);
  const views = layout.views(params);
  for (const name of MODEL_TENSOR_ORDER) {
    const source = get(name).data;
    const target = views[name];
    // Check the source too: F64 NaN/Inf would be caught after conversion, but a finite
    // F64 beyond float32 range becoming Inf deserves its own message.
    const bad = firstNonFinite(source);
    if (bad >= 0) fail(`tensor ${name} holds ${source[bad]} at index ${bad}; expected finite values only`);
    target.set(source);
    const overflow = firstNonFinite(target);
    if (overflow >= 0) {
      fail(`tensor ${name} holds ${source[overflow]} at index ${overflow}, which is beyond float32 range; expected values within ±3.4028235e38`);
    }
  }
  const config: ModelConfig = { dim: d, classes: C, leaf };
  // fromEntries, not assignment, so that a key named "__proto__" survives.
  const extraMetadata: Record<string, string> = Object.fromEntries(
    Object.entries(metadata).filter(([key]) => !RESERVED_METADATA_KEYS.includes(key)),
  );
  return { model: new Model(config, new Vocabulary(words), params), extraMetadata };
}

function firstNonFinite(data: Float32Array | Float64Array): number {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) return i;
  }
  return -1;
}

function parseVocabulary(text: string | undefined, rows: number, fail: (message: string) => never): string[] {
  if (text === undefined) fail('metadata has no vocab; expected the vocabulary as a JSON array of strings (index = word id)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text!);
  } catch (e) {
    fail(`metadata vocab is not valid JSON (${(e as Error).message}); expected a JSON array of strings`);
  }
  if (!Array.isArray(parsed)) fail('metadata vocab is not a JSON array; expected a JSON array of strings (index = word id)');
  const words = parsed as unknown[];
  const seen = new Map<string, number>();
  words.forEach((w, i) => {
    if (typeof w !== 'string') fail(`metadata vocab entry ${i} is ${w === null ? 'null' : typeof w}; expected a string`);
    const earlier = seen.get(w as string);
    if (earlier !== undefined) {
      fail(`metadata vocab entry ${i} repeats ${JSON.stringify(w)} (entry ${earlier}); expected distinct words`);
    }
    seen.set(w as string, i);
  });
  if (words.length !== rows) {
    fail(`metadata vocab has ${words.length} words but tensor L has ${rows} rows; expected one row per word`);
  }
  return words as string[];
}
