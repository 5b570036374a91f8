import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, it, expect } from 'vitest';
import { Model, TENSOR_NAMES } from '../src/model';
import {
  MODEL_FORMAT,
  ModelFileError,
  decodeModel,
  decodeModelFile,
  encodeModel,
  loadModel,
  loadModelFile,
  saveModel,
} from '../src/model-file';
import { TensorInput, decodeSafetensors, encodeSafetensors } from '../src/safetensors';
import { Vocabulary } from '../src/vocab';

const SOURCE = 'sentiment.safetensors';

function smallModel(leaf: 'identity' | 'tanh' = 'identity'): Model {
  return Model.create(new Vocabulary(['*UNK*', 'good', 'bad']), { dim: 3, seed: 7, leaf });
}

function paramBytes(model: Model): Buffer {
  return Buffer.from(model.params.buffer, model.params.byteOffset, model.params.byteLength);
}

/** Our own file, taken apart so a test can break one thing and put it back together. */
function parts(model = smallModel()) {
  const { tensors, metadata } = decodeSafetensors(encodeModel(model), SOURCE);
  const t: Record<string, TensorInput> = {};
  for (const [name, x] of tensors) t[name] = { dtype: x.dtype as 'F32', shape: x.shape, data: x.data };
  return { tensors: t, metadata };
}

function rebuild(p: { tensors: Record<string, TensorInput>; metadata: Record<string, string> }): Buffer {
  return encodeSafetensors(p.tensors, p.metadata);
}

function expectRejected(bytes: Uint8Array, ...fragments: (string | RegExp)[]): void {
  let caught: unknown;
  try {
    decodeModel(bytes, SOURCE);
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a ModelFileError').toBeInstanceOf(ModelFileError);
  const message = (caught as Error).message;
  expect(message.startsWith(`${SOURCE}: `)).toBe(true);
  for (const f of fragments) expect(message).toMatch(f);
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-model-file-'));
}

describe('model files', () => {
  it('a model has a leaf activation the core knows: an unknown one is refused, not trained as identity', () => {
    const vocab = new Vocabulary(['*UNK*', 'good']);
    expect(() => Model.create(vocab, { dim: 3, leaf: 'relu' as 'tanh' })).toThrow(/leaf must be "identity" or "tanh", got "relu"/);
    expect(() => new Model({ dim: 3, classes: 5, leaf: undefined as unknown as 'tanh' }, vocab)).toThrow(/leaf must be "identity" or "tanh", got undefined/);
  });

  it('save → load is bit-exact, including -0, subnormals and ±max float', () => {
    const model = smallModel('tanh');
    const { L, V, bs } = model.tensors;
    L[0] = -0;
    L[1] = 1.401298464324817e-45;
    L[2] = -1.1754942106924411e-38;
    V[5] = 3.4028234663852886e38;
    V[6] = -3.4028234663852886e38;
    bs[1] = -0;
    const dir = tempDir();
    const file = path.join(dir, 'model.safetensors');
    saveModel(model, file);
    const loaded = loadModel(file);
    expect(paramBytes(loaded).equals(paramBytes(model))).toBe(true);
    expect(Object.is(loaded.tensors.L[0], -0)).toBe(true);
    expect(loaded.config).toEqual({ dim: 3, classes: 5, leaf: 'tanh' });
    expect(loaded.vocab.words).toEqual(['*UNK*', 'good', 'bad']);
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
    fs.rmSync(dir, { recursive: true });
  });

  it('re-encoding a decoded file reproduces its bytes', () => {
    const bytes = encodeModel(smallModel());
    expect(encodeModel(decodeModel(bytes, SOURCE)).equals(bytes)).toBe(true);
    const withExtra = encodeModel(smallModel(), { lambda: '0.0001', epochs: '3' });
    const { model, extraMetadata } = decodeModelFile(withExtra, SOURCE);
    expect(extraMetadata).toEqual({ lambda: '0.0001', epochs: '3' });
    expect(encodeModel(model, extraMetadata).equals(withExtra)).toBe(true);
  });

  it('writes the contract: named F32 tensors with DESIGN.md shapes, string metadata', () => {
    const model = smallModel();
    const { tensors, metadata } = decodeSafetensors(encodeModel(model, { trainedOn: 'sst' }), SOURCE);
    expect([...tensors.keys()]).toEqual(['L', 'W', 'b', 'V', 'Ws', 'bs']);
    const shapes = Object.fromEntries([...tensors].map(([k, t]) => [k, t.shape]));
    expect(shapes).toEqual({ L: [3, 3], W: [3, 6], b: [3], V: [3, 6, 6], Ws: [5, 3], bs: [5] });
    for (const [name, t] of tensors) {
      expect(t.dtype).toBe('F32');
      expect(Buffer.from(t.data.buffer).equals(Buffer.from(model.tensors[name as (typeof TENSOR_NAMES)[number]].slice().buffer))).toBe(true);
    }
    expect(metadata).toEqual({
      vocab: '["*UNK*","good","bad"]',
      dim: '3',
      classes: '5',
      leaf: 'identity',
      format: MODEL_FORMAT,
      trainedOn: 'sst',
    });
    expect(loadModelFileRoundTrip(model, { trainedOn: 'sst' })).toEqual({ trainedOn: 'sst' });
  });

  it('refuses extra metadata that would overwrite a contract key', () => {
    expect(() => encodeModel(smallModel(), { vocab: '[]' })).toThrow(/may not set "vocab"/);
    expect(() => encodeModel(smallModel(), { leaf: 'tanh' })).toThrow(/may not set "leaf"/);
  });

  it('loads a file written the way Python safetensors would: other order, no padding, F64, no hyperparameters', () => {
    const model = smallModel();
    // Python would write e.g. save_file({k: v.astype(np.float64)}, metadata={"vocab": json.dumps(words)}),
    // sorted by dtype then name; the header is not padded here, unlike the reference writer's.
    const names = ['L', 'V', 'W', 'Ws', 'b', 'bs'] as const;
    const header: Record<string, unknown> = { __metadata__: { vocab: JSON.stringify(model.vocab.words), format: 'pt' } };
    const chunks: Buffer[] = [];
    let offset = 0;
    for (const name of names) {
      const f64 = Float64Array.from(model.tensors[name]);
      header[name] = { dtype: 'F64', shape: model.layout.shapes[name], data_offsets: [offset, offset + f64.byteLength] };
      chunks.push(Buffer.from(f64.buffer));
      offset += f64.byteLength;
    }
    let json = Buffer.from(JSON.stringify(header));
    if (json.length % 8 === 0) json = Buffer.from(JSON.stringify(header) + '\n');
    expect(json.length % 8).not.toBe(0);
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(json.length));
    const loaded = decodeModel(Buffer.concat([length, json, ...chunks]), SOURCE);
    expect(paramBytes(loaded).equals(paramBytes(model))).toBe(true);
    expect(loaded.config).toEqual(model.config);
  });

  it('rounds F64 weights to float32', () => {
    const p = parts();
    p.tensors.b = { dtype: 'F64', shape: [3], data: new Float64Array([0.1, 1 + 2 ** -30, -1e-50]) };
    const loaded = decodeModel(rebuild(p), SOURCE);
    expect([...loaded.tensors.b]).toEqual([Math.fround(0.1), 1, -0]);
  });

  it('reads a file without leaf as identity', () => {
    const p = parts(smallModel('tanh'));
    delete p.metadata.leaf;
    expect(decodeModel(rebuild(p), SOURCE).config.leaf).toBe('identity');
  });

  it('reads a vocabulary without *UNK*, mapping unknown words to id 0', () => {
    const model = Model.create(new Vocabulary(['good', 'bad', 'ugly']), { dim: 2, seed: 3 });
    const loaded = decodeModel(encodeModel(model), SOURCE);
    expect(loaded.vocab.words).toEqual(['good', 'bad', 'ugly']);
    expect(loaded.vocab.id('never seen')).toBe(0);
  });

  it('keeps words verbatim, however odd', () => {
    const words = ['*UNK*', '8\u00a01\\/2', '-LRB-', '"', '', '😀'];
    const model = Model.create(new Vocabulary(words), { dim: 2, seed: 1 });
    expect(decodeModel(encodeModel(model), SOURCE).vocab.words).toEqual(words);
  });
});

function loadModelFileRoundTrip(model: Model, extra: Record<string, string>): Record<string, string> {
  const dir = tempDir();
  const file = path.join(dir, 'm.safetensors');
  saveModel(model, file, extra);
  const { extraMetadata } = loadModelFile(file);
  fs.rmSync(dir, { recursive: true });
  return extraMetadata;
}

describe('decodeModel rejects files that break the contract, saying what was expected', () => {
  it('a broken safetensors container, as a ModelFileError naming the file', () => {
    expectRejected(new Uint8Array(3), /3 bytes long/);
    const bytes = encodeModel(smallModel());
    expectRejected(bytes.subarray(0, bytes.length - 1), /lies beyond the data section/);
  });

  it('a missing tensor', () => {
    const p = parts();
    delete p.tensors.V;
    delete p.tensors.bs;
    expectRejected(rebuild(p), /missing tensors V, bs; a model file holds L, W, b, V, Ws, bs/);
  });

  it('an unknown extra tensor, naming it', () => {
    const p = parts();
    p.tensors.U = { dtype: 'F32', shape: [1], data: new Float32Array(1) };
    expectRejected(rebuild(p), /unexpected tensor "U"; a model file holds only L, W, b, V, Ws, bs/);
  });

  it('a dtype other than F32/F64', () => {
    const bytes = encodeModel(smallModel());
    const n = Number(bytes.readBigUInt64LE(0));
    const header = bytes.subarray(8, 8 + n).toString().replace('"bs":{"dtype":"F32","shape":[5]', '"bs":{"dtype":"I32","shape":[5]');
    expect(header.length).toBe(n);
    const tampered = Buffer.concat([bytes.subarray(0, 8), Buffer.from(header), bytes.subarray(8 + n)]);
    expectRejected(tampered, /tensor "bs": dtype I32 is not supported; expected F32 or F64/);
  });

  it('biases that are not vectors', () => {
    let p = parts();
    p.tensors.b = { dtype: 'F32', shape: [1, 3], data: p.tensors.b.data };
    expectRejected(rebuild(p), /tensor b has shape \[1, 3\]; expected \[d\] with d >= 1/);
    p = parts();
    p.tensors.bs = { dtype: 'F32', shape: [1], data: new Float32Array(1) };
    expectRejected(rebuild(p), /tensor bs has shape \[1\]; expected \[C\] with C >= 2 classes/);
  });

  it('W, V, Ws that disagree with d and C', () => {
    let p = parts();
    p.tensors.W = { dtype: 'F32', shape: [6, 3], data: p.tensors.W.data };
    expectRejected(rebuild(p), /tensor W has shape \[6, 3\]; expected \[3, 6\] \(d = 3 from b, C = 5 from bs\)/);
    p = parts();
    p.tensors.V = { dtype: 'F32', shape: [3, 36], data: p.tensors.V.data };
    expectRejected(rebuild(p), /tensor V has shape \[3, 36\]; expected \[3, 6, 6\]/);
    p = parts();
    p.tensors.Ws = { dtype: 'F32', shape: [3, 5], data: p.tensors.Ws.data };
    expectRejected(rebuild(p), /tensor Ws has shape \[3, 5\]; expected \[5, 3\]/);
  });

  it('L whose width is not d', () => {
    const p = parts();
    p.tensors.L = { dtype: 'F32', shape: [1, 9], data: p.tensors.L.data };
    expectRejected(rebuild(p), /tensor L has shape \[1, 9\]; expected \[vocabulary size, 3\]/);
  });

  it('vocab whose length is not the number of rows of L', () => {
    const p = parts();
    p.metadata.vocab = '["*UNK*","good"]';
    expectRejected(rebuild(p), /metadata vocab has 2 words but tensor L has 3 rows; expected one row per word/);
  });

  it('no vocab', () => {
    const p = parts();
    delete p.metadata.vocab;
    expectRejected(rebuild(p), /metadata has no vocab; expected the vocabulary as a JSON array of strings/);
  });

  it('vocab that is not JSON, not an array, or not strings', () => {
    const p = parts();
    p.metadata.vocab = '*UNK* good bad';
    expectRejected(rebuild(p), /metadata vocab is not valid JSON .*; expected a JSON array of strings/);
    p.metadata.vocab = '{"0":"*UNK*"}';
    expectRejected(rebuild(p), /metadata vocab is not a JSON array/);
    p.metadata.vocab = '["*UNK*",2,"bad"]';
    expectRejected(rebuild(p), /metadata vocab entry 1 is number; expected a string/);
  });

  it('vocab with a repeated word', () => {
    const p = parts();
    p.metadata.vocab = '["*UNK*","good","good"]';
    expectRejected(rebuild(p), /metadata vocab entry 2 repeats "good" \(entry 1\); expected distinct words/);
  });

  it('leaf other than identity or tanh', () => {
    const p = parts();
    p.metadata.leaf = 'relu';
    expectRejected(rebuild(p), /metadata leaf is "relu"; expected "identity" or "tanh"/);
  });

  it('dim or classes that disagree with the shapes, or are not integers', () => {
    const p = parts();
    p.metadata.dim = '25';
    expectRejected(rebuild(p), /metadata dim is 25 but the tensor shapes say 3/);
    p.metadata.dim = '3.0';
    expectRejected(rebuild(p), /metadata dim is "3.0"; expected a decimal integer/);
    p.metadata.dim = '3';
    p.metadata.classes = '2';
    expectRejected(rebuild(p), /metadata classes is 2 but the tensor shapes say 5/);
  });

  it('a future rntn format', () => {
    const p = parts();
    p.metadata.format = 'rntn/2';
    expectRejected(rebuild(p), /metadata format is "rntn\/2"; this version of rntn reads rntn\/1/);
  });

  it('NaN or infinity in the weights, naming the tensor and the first index', () => {
    for (const [name, index, value] of [['W', 7, NaN], ['L', 8, -Infinity], ['bs', 0, Infinity]] as const) {
      const p = parts();
      p.tensors[name].data[index] = value;
      if (name === 'W') p.tensors[name].data[9] = NaN;
      expectRejected(rebuild(p), new RegExp(`tensor ${name} holds ${value} at index ${index}; expected finite values only`));
    }
    const p = parts();
    p.tensors.V = { dtype: 'F64', shape: [3, 6, 6], data: Float64Array.from(p.tensors.V.data) };
    p.tensors.V.data[4] = NaN;
    expectRejected(rebuild(p), /tensor V holds NaN at index 4/);
  });

  it('F64 weights beyond float32 range', () => {
    const p = parts();
    p.tensors.Ws = { dtype: 'F64', shape: [5, 3], data: Float64Array.from(p.tensors.Ws.data) };
    p.tensors.Ws.data[2] = 1e39;
    expectRejected(rebuild(p), /tensor Ws holds 1e\+39 at index 2, which is beyond float32 range/);
  });

  it('loadModel names the path it was given', () => {
    const dir = tempDir();
    const file = path.join(dir, 'bad.safetensors');
    fs.writeFileSync(file, 'not a model');
    expect(() => loadModel(file)).toThrow(ModelFileError);
    expect(() => loadModel(file)).toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: `));
    fs.rmSync(dir, { recursive: true });
  });
});
