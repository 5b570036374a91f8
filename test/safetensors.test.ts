import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describe, it, expect, vi, afterEach } from 'vitest';

// No big-endian machine is at hand, so the host's byte order is faked (only where a test sets it).
const host = vi.hoisted(() => ({ endianness: undefined as 'LE' | 'BE' | undefined }));
vi.mock('os', async (importOriginal) => {
  const actual = await importOriginal<typeof import('os')>();
  const endianness = () => host.endianness ?? actual.endianness();
  return { ...actual, default: { ...actual, endianness }, endianness };
});

import {
  MAX_HEADER_BYTES,
  SafetensorsError,
  decodeSafetensors,
  encodeSafetensors,
} from '../src/safetensors';
import { writeFileAtomic } from '../src/files';

/** A file assembled byte by byte, the way another writer might lay it out (no padding unless asked). */
function assemble(header: unknown, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  return assembleRaw(json, data, headerLength);
}

function assembleRaw(json: Uint8Array, data: Uint8Array = new Uint8Array(0), headerLength?: bigint): Uint8Array {
  const out = Buffer.alloc(8 + json.length + data.length);
  out.writeBigUInt64LE(headerLength ?? BigInt(json.length), 0);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function bytesOf(a: Float32Array | Float64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

function expectError(fn: () => unknown, ...fragments: (string | RegExp)[]): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, 'expected a SafetensorsError').toBeInstanceOf(SafetensorsError);
  const message = (caught as Error).message;
  expect(message.startsWith('model.safetensors: ')).toBe(true);
  for (const f of fragments) expect(message).toMatch(f);
}

const decode = (bytes: Uint8Array) => decodeSafetensors(bytes, 'model.safetensors');

/** Values whose bit patterns a careless codec (e.g. one going through JSON or text) would change. */
function specialFloat32(): Float32Array {
  const values = [
    0, -0, 1, -1,
    1.401298464324817e-45, // smallest subnormal
    -1.401298464324817e-45,
    1.1754942106924411e-38, // largest subnormal
    1.1754943508222875e-38, // smallest normal
    3.4028234663852886e38, // max float32
    -3.4028234663852886e38,
    Math.fround(Math.PI), Math.fround(1 / 3),
  ];
  const a = new Float32Array(values.length + 20);
  a.set(values);
  // Deterministic pseudo-random bit patterns, skipping NaNs, over the whole exponent range.
  const bits = new Uint32Array(a.buffer);
  let x = 0x12345678;
  for (let i = values.length; i < a.length; i++) {
    do {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    } while ((x & 0x7f800000) === 0x7f800000);
    bits[i] = x;
  }
  return a;
}

describe('encodeSafetensors / decodeSafetensors', () => {
  it('round-trips F32 and F64 bit for bit, including -0, subnormals and ±max', () => {
    const f32 = specialFloat32();
    const f64 = new Float64Array([-0, 5e-324, -5e-324, Number.MAX_VALUE, -Number.MAX_VALUE, Math.PI, Infinity, -Infinity, NaN]);
    const bytes = encodeSafetensors(
      { a: { dtype: 'F32', shape: [4, 8], data: f32 }, z: { dtype: 'F64', shape: [9], data: f64 } },
      { note: 'hello', 'ünïcode': '✓' },
    );
    const { tensors, metadata } = decode(bytes);
    expect([...tensors.keys()]).toEqual(['a', 'z']);
    const a = tensors.get('a')!;
    expect(a.dtype).toBe('F32');
    expect(a.shape).toEqual([4, 8]);
    expect(a.data).toBeInstanceOf(Float32Array);
    expect(Buffer.from(bytesOf(a.data)).equals(Buffer.from(bytesOf(f32)))).toBe(true);
    expect(Object.is(a.data[1], -0)).toBe(true);
    const z = tensors.get('z')!;
    expect(z.data).toBeInstanceOf(Float64Array);
    expect(Buffer.from(bytesOf(z.data)).equals(Buffer.from(bytesOf(f64)))).toBe(true);
    expect(metadata).toEqual({ note: 'hello', 'ünïcode': '✓' });
  });

  it('writes the reference layout: u64 LE length, space-padded JSON to a multiple of 8, tensors in the given order', () => {
    const bytes = encodeSafetensors(
      {
        second: { dtype: 'F32', shape: [3], data: new Float32Array([1, 2, 3]) },
        first: { dtype: 'F64', shape: [1, 2], data: new Float64Array([4, 5]) },
      },
      { k: 'v' },
    );
    const n = Number(bytes.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const json = bytes.subarray(8, 8 + n).toString('utf8');
    expect(json.startsWith('{')).toBe(true);
    expect(json.trimEnd().endsWith('}')).toBe(true);
    expect(json.length - json.trimEnd().length).toBeLessThan(8);
    const header = JSON.parse(json);
    expect(header).toEqual({
      __metadata__: { k: 'v' },
      second: { dtype: 'F32', shape: [3], data_offsets: [0, 12] },
      first: { dtype: 'F64', shape: [1, 2], data_offsets: [12, 28] },
    });
    expect(bytes.length).toBe(8 + n + 28);
    expect(new Float32Array(bytes.buffer.slice(bytes.byteOffset + 8 + n, bytes.byteOffset + 8 + n + 12))).toEqual(new Float32Array([1, 2, 3]));
  });

  it('is deterministic and leaves out __metadata__ when none is given', () => {
    const make = () => encodeSafetensors({ x: { dtype: 'F32', shape: [2], data: new Float32Array([1, -0]) } });
    expect(make().equals(make())).toBe(true);
    const n = Number(make().readBigUInt64LE(0));
    expect(JSON.parse(make().subarray(8, 8 + n).toString())).not.toHaveProperty('__metadata__');
    expect(decode(make()).metadata).toEqual({});
  });

  it('handles scalars and empty tensors', () => {
    const bytes = encodeSafetensors({
      s: { dtype: 'F64', shape: [], data: new Float64Array([7]) },
      e: { dtype: 'F32', shape: [0, 5], data: new Float32Array(0) },
      t: { dtype: 'F32', shape: [1], data: new Float32Array([8]) },
    });
    const { tensors } = decode(bytes);
    expect(tensors.get('s')!.data[0]).toBe(7);
    expect(tensors.get('e')!.shape).toEqual([0, 5]);
    expect(tensors.get('e')!.data.length).toBe(0);
    expect(tensors.get('t')!.data[0]).toBe(8);
  });

  it('decodes from a buffer at an unaligned offset into aligned arrays that do not alias the input', () => {
    const bytes = encodeSafetensors({ x: { dtype: 'F64', shape: [3], data: new Float64Array([1.5, -2.5, 1e-310]) } });
    const backing = new Uint8Array(bytes.length + 3);
    backing.set(bytes, 3);
    const shifted = backing.subarray(3);
    const x = decode(shifted).tensors.get('x')!.data;
    expect(x.byteOffset % 8).toBe(0);
    expect([...x]).toEqual([1.5, -2.5, 1e-310]);
    backing.fill(0);
    expect(x[0]).toBe(1.5);
  });

  it('reads a file laid out as other writers may: no padding, unsorted offsets, F64, null-free metadata', () => {
    const w = new Float64Array([0.1, 0.2, 0.3, 0.4]);
    const v = new Float32Array([9, 8]);
    const data = new Uint8Array(w.byteLength + v.byteLength);
    data.set(bytesOf(v), 0);
    data.set(bytesOf(w), v.byteLength);
    // Header key order differs from data order; the JSON length (odd) leaves the data unaligned.
    const file = assemble(
      '{"w":{"dtype":"F64","shape":[2,2],"data_offsets":[8,40]},"__metadata__":{"format":"pt"},"v":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}',
      data,
    );
    expect((file.length - data.length) % 8).not.toBe(0);
    const { tensors, metadata } = decode(file);
    expect([...tensors.get('w')!.data]).toEqual([0.1, 0.2, 0.3, 0.4]);
    expect([...tensors.get('v')!.data]).toEqual([9, 8]);
    expect(metadata).toEqual({ format: 'pt' });
  });

  it('keeps names and metadata keys that are special in JavaScript', () => {
    const tensors = JSON.parse('{"__proto__":{"dtype":"F32","shape":[1],"data":null},"constructor":{"dtype":"F32","shape":[1],"data":null}}');
    tensors.__proto__.data = new Float32Array([1]);
    tensors.constructor.data = new Float32Array([2]);
    const bytes = encodeSafetensors(tensors, JSON.parse('{"__proto__":"p","toString":"t"}'));
    const decoded = decode(bytes);
    expect([...decoded.tensors.keys()]).toEqual(['__proto__', 'constructor']);
    expect(decoded.tensors.get('__proto__')!.data[0]).toBe(1);
    expect(Object.keys(decoded.metadata)).toEqual(['__proto__', 'toString']);
    expect(Object.getOwnPropertyDescriptor(decoded.metadata, '__proto__')!.value).toBe('p');
  });

  it('treats "__metadata__": null as no metadata, as the reference reader does', () => {
    expect(decode(assemble({ __metadata__: null })).metadata).toEqual({});
  });

  it('refuses to encode data that does not match its shape or dtype', () => {
    expect(() => encodeSafetensors({ x: { dtype: 'F32', shape: [3], data: new Float32Array(2) } })).toThrow(/holds 3 values but the data has 2/);
    expect(() => encodeSafetensors({ x: { dtype: 'F32', shape: [2], data: new Float64Array(2) } })).toThrow(/needs a Float32Array/);
    expect(() => encodeSafetensors({ x: { dtype: 'F32', shape: [-2], data: new Float32Array(2) } })).toThrow(/non-negative integers/);
    expect(() => encodeSafetensors({ __metadata__: { dtype: 'F32', shape: [0], data: new Float32Array(0) } })).toThrow(/__metadata__/);
    expect(() => encodeSafetensors({}, { k: 3 as unknown as string })).toThrow(/must be a string/);
  });
});

describe('decodeSafetensors rejects malformed files, saying what was expected', () => {
  const one = (entry: unknown, dataLength = 8) => assemble({ x: entry }, new Uint8Array(dataLength));

  it('file shorter than 8 bytes', () => {
    expectError(() => decode(new Uint8Array(5)), /5 bytes long/, /8-byte header length/);
  });

  it('header length beyond the file', () => {
    expectError(() => decode(assemble('{}', new Uint8Array(0), 100n)), /header length is 100 bytes but only 2 bytes follow/);
  });

  it('header length beyond the cap, without allocating it', () => {
    expectError(() => decode(assemble('{}', new Uint8Array(0), 2n ** 63n)), new RegExp(`expected at most ${MAX_HEADER_BYTES}`));
    expectError(() => decode(assemble('{}', new Uint8Array(0), BigInt(MAX_HEADER_BYTES) + 1n)), /expected at most/);
  });

  it('header that is not UTF-8', () => {
    expectError(() => decode(assembleRaw(new Uint8Array([0x7b, 0xff, 0x7d]))), /not valid UTF-8/, /expected a UTF-8 JSON object/);
  });

  it('header that is not JSON', () => {
    expectError(() => decode(assemble('{"x": ')), /not valid JSON/, /expected a JSON object/);
    expectError(() => decode(assembleRaw(Buffer.from('\ufeff{}'))), /not valid JSON/);
  });

  it('header that is JSON but not an object', () => {
    expectError(() => decode(assemble('[]')), /header is an array; expected a JSON object/);
    expectError(() => decode(assemble('null')), /header is null; expected a JSON object/);
    expectError(() => decode(assemble('42')), /header is the number 42/);
  });

  it('entry that is not an object', () => {
    expectError(() => decode(assemble({ x: 'F32' })), /tensor "x" is the string "F32"; expected an object with dtype, shape and data_offsets/);
  });

  it('missing or mistyped dtype', () => {
    expectError(() => decode(one({ shape: [2], data_offsets: [0, 8] })), /tensor "x": dtype is missing; expected a string/);
    expectError(() => decode(one({ dtype: 4, shape: [2], data_offsets: [0, 8] })), /dtype is the number 4; expected a string/);
  });

  it('missing or mistyped shape', () => {
    expectError(() => decode(one({ dtype: 'F32', data_offsets: [0, 8] })), /shape is missing; expected an array of non-negative integers/);
    expectError(() => decode(one({ dtype: 'F32', shape: '2', data_offsets: [0, 8] })), /shape is the string "2"; expected an array/);
  });

  it('shape with non-integers or negatives', () => {
    expectError(() => decode(one({ dtype: 'F32', shape: [2.5], data_offsets: [0, 8] })), /shape\[0\] is the number 2.5; expected a non-negative integer/);
    expectError(() => decode(one({ dtype: 'F32', shape: [1, -2], data_offsets: [0, 8] })), /shape\[1\] is the number -2; expected a non-negative integer/);
    expectError(() => decode(one({ dtype: 'F32', shape: ['2'], data_offsets: [0, 8] })), /shape\[0\] is the string "2"/);
  });

  it('missing data_offsets, or not an integer pair', () => {
    expectError(() => decode(one({ dtype: 'F32', shape: [2] })), /data_offsets is missing; expected a pair \[begin, end\]/);
    expectError(() => decode(one({ dtype: 'F32', shape: [2], data_offsets: [0, 4, 8] })), /of length 3; expected a pair/);
    expectError(() => decode(one({ dtype: 'F32', shape: [2], data_offsets: [0.5, 8] })), /data_offsets begin is the number 0.5; expected a non-negative integer/);
    expectError(() => decode(one({ dtype: 'F32', shape: [2], data_offsets: [0, '8'] })), /data_offsets end is the string "8"/);
    expectError(() => decode(one({ dtype: 'F32', shape: [2], data_offsets: [-8, 0] })), /begin is the number -8/);
  });

  it('data_offsets with begin after end', () => {
    expectError(() => decode(one({ dtype: 'F32', shape: [2], data_offsets: [8, 0] })), /begin after end; expected begin <= end/);
  });

  it('data_offsets ending beyond the data', () => {
    expectError(() => decode(one({ dtype: 'F32', shape: [3], data_offsets: [0, 12] })), /end 12 lies beyond the data section, which is 8 bytes long/);
  });

  it('byte count that does not match the shape', () => {
    expectError(() => decode(one({ dtype: 'F32', shape: [3], data_offsets: [0, 8] })), /shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] span 8/);
    expectError(() => decode(one({ dtype: 'F64', shape: [2], data_offsets: [0, 8] })), /of F64 needs 16 bytes/);
    // Sizes past 2^53 are reported exactly, not rounded.
    expectError(() => decode(one({ dtype: 'F32', shape: [2 ** 31, 2 ** 31, 2], data_offsets: [0, 8] })), /needs 36893488147419103232 bytes/);
  });

  it('overlapping tensors', () => {
    const file = assemble(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
        e: { dtype: 'F32', shape: [0], data_offsets: [4, 4] },
      },
      new Uint8Array(12),
    );
    expectError(() => decode(file), /tensors "a" \[0, 8\] and "b" \[4, 12\] overlap; expected every tensor to have its own bytes/);
  });

  it('unsupported or unknown dtypes, naming the tensor', () => {
    expectError(() => decode(one({ dtype: 'I32', shape: [2], data_offsets: [0, 8] })), /tensor "x": dtype I32 is not supported; expected F32 or F64/);
    expectError(() => decode(one({ dtype: 'F16', shape: [4], data_offsets: [0, 8] })), /dtype F16 is not supported/);
    expectError(() => decode(one({ dtype: 'float32', shape: [2], data_offsets: [0, 8] })), /dtype float32 is not a safetensors dtype/);
  });

  it('__metadata__ that is not an object of strings', () => {
    expectError(() => decode(assemble({ __metadata__: ['a'] })), /__metadata__ is an array; expected an object of string values/);
    expectError(() => decode(assemble({ __metadata__: { dim: 25 } })), /__metadata__ entry "dim" is the number 25; expected a string/);
  });
});

describe('byte order', () => {
  afterEach(() => {
    host.endianness = undefined;
  });

  it('refuses to run on a big-endian host rather than misread the data', () => {
    host.endianness = 'BE';
    expectError(() => decode(assemble({})), /big-endian/);
    expect(() => encodeSafetensors({})).toThrow(/big-endian/);
  });
});

describe('writeFileAtomic', () => {
  const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'rntn-atomic-'));

  it('creates and then replaces the target, leaving no temporary files', () => {
    const dir = tempDir();
    const target = path.join(dir, 'model.safetensors');
    writeFileAtomic(target, Buffer.from('first'));
    expect(fs.readFileSync(target, 'utf8')).toBe('first');
    writeFileAtomic(target, Buffer.from('second, longer'));
    expect(fs.readFileSync(target, 'utf8')).toBe('second, longer');
    expect(fs.readdirSync(dir)).toEqual(['model.safetensors']);
    fs.rmSync(dir, { recursive: true });
  });

  it('writes large contents completely', () => {
    const dir = tempDir();
    const target = path.join(dir, 'big.bin');
    const data = new Uint8Array(5_000_001).map((_, i) => (i * 31) & 0xff);
    writeFileAtomic(target, data);
    expect(Buffer.from(data).equals(fs.readFileSync(target))).toBe(true);
    fs.rmSync(dir, { recursive: true });
  });

  it('throws and creates nothing when the directory does not exist', () => {
    const dir = tempDir();
    expect(() => writeFileAtomic(path.join(dir, 'missing', 'model.safetensors'), Buffer.from('x'))).toThrow(/ENOENT/);
    expect(fs.readdirSync(dir)).toEqual([]);
    fs.rmSync(dir, { recursive: true });
  });

  it('removes its temporary file when the final rename fails', () => {
    const dir = tempDir();
    const target = path.join(dir, 'occupied');
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, 'inside'), 'keep');
    expect(() => writeFileAtomic(target, Buffer.from('x'))).toThrow();
    expect(fs.readdirSync(dir)).toEqual(['occupied']);
    expect(fs.readFileSync(path.join(target, 'inside'), 'utf8')).toBe('keep');
    fs.rmSync(dir, { recursive: true });
  });
});
