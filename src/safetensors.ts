/**
 * A dependency-free reader and writer for the safetensors format
 * (https://huggingface.co/docs/safetensors), limited to F32 and F64 tensors.
 *
 * Layout: an 8-byte little-endian u64 N, N bytes of UTF-8 JSON header, then
 * the data section. The header maps tensor names to
 * `{dtype, shape, data_offsets: [begin, end]}` (offsets relative to the data
 * section) and may hold `__metadata__`, a map of string to string.
 *
 * The reader treats every file as hostile: model files are exchanged between
 * programs, and DESIGN.md says nothing a user passes may crash the process.
 */
import * as os from 'os';

export type SafetensorsDtype = 'F32' | 'F64';

export interface TensorInput {
  dtype: SafetensorsDtype;
  shape: number[];
  data: Float32Array | Float64Array;
}

export interface DecodedTensor {
  dtype: string;
  shape: number[];
  data: Float32Array | Float64Array;
}

export interface DecodedSafetensors {
  tensors: Map<string, DecodedTensor>;
  metadata: Record<string, string>;
}

/** A file that does not follow the safetensors format; the message starts with the file's name. */
export class SafetensorsError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SafetensorsError';
  }
}

/**
 * The reference implementation refuses headers above 100 MB; we do the same,
 * so that a corrupt length can never make us allocate or scan more than that.
 */
export const MAX_HEADER_BYTES = 100_000_000;

const METADATA_KEY = '__metadata__';

const ITEM_SIZE: Record<SafetensorsDtype, number> = { F32: 4, F64: 8 };

/** Every dtype the format defines, so an unsupported one is reported as such rather than as garbage. */
const KNOWN_DTYPES = new Set([
  'BOOL', 'U8', 'I8', 'U16', 'I16', 'U32', 'I32', 'U64', 'I64',
  'F16', 'BF16', 'F32', 'F64', 'F8_E4M3', 'F8_E5M2', 'F8_E8M0', 'F4', 'F6_E2M3', 'F6_E3M2', 'C64',
]);

function assertLittleEndianHost(what: string): void {
  // Typed arrays use the host's byte order and the format is little-endian;
  // copying bytes straight into a Float32Array is only right on an LE host.
  if (os.endianness() !== 'LE') {
    throw new SafetensorsError(`${what}: this host is big-endian; rntn only reads and writes safetensors on little-endian hosts`);
  }
}

/** The first `max` UTF-16 units of `s`, one fewer when the cut would split a surrogate pair (JSON.stringify would show half of it as \udXXX). */
export function excerpt(s: string, max: number): string {
  if (s.length <= max) return s;
  const last = s.charCodeAt(max - 1);
  return s.slice(0, last >= 0xd800 && last <= 0xdbff ? max - 1 : max);
}

function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? excerpt(value, 40) + '…' : value)}`;
  if (typeof value === 'number') return `the number ${value}`;
  return typeof value === 'object' ? 'an object' : `${typeof value} ${String(value)}`;
}

/**
 * Plain assignment would turn a key named "__proto__" (legal in JSON and in
 * safetensors) into a prototype change and silently drop the entry.
 */
function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Shapes in messages; a hostile header may list millions of dims, and a message should stay readable. */
function shapeText(dims: readonly number[]): string {
  const MAX_SHOWN = 8;
  if (dims.length <= MAX_SHOWN) return `[${dims.join(', ')}]`;
  return `[${dims.slice(0, MAX_SHOWN).join(', ')}, … (${dims.length} dims)]`;
}

/**
 * Bytes a tensor of shape `dims` occupies, in BigInt because a product of
 * plausible dims can pass 2^53 and round to the right-looking size. Exact for
 * up to 64 dims; beyond that the product stops once it exceeds `limit`: the
 * full product of a million dims near 2^53 is a BigInt of tens of millions of
 * bits, and building it takes time quadratic in the number of dims (a 1.7 MB
 * header with 100,000 such dims took a minute).
 */
function bytesNeeded(dims: readonly number[], itemSize: number, limit: bigint): { bytes: bigint; exact: boolean } {
  // A zero anywhere empties the tensor whatever the other dims say, so it must be found before stopping early.
  if (dims.includes(0)) return { bytes: 0n, exact: true };
  const stopEarly = dims.length > 64;
  let bytes = BigInt(itemSize);
  for (const n of dims) {
    bytes *= BigInt(n);
    if (stopEarly && bytes > limit) return { bytes, exact: false };
  }
  return { bytes, exact: true };
}

/**
 * Encodes tensors (in the order given, back to back) and optional string
 * metadata. The header is padded with spaces to a multiple of 8 bytes, as the
 * reference writer does, so that readers which map the file can view the data
 * in place. The same input always gives the same bytes.
 */
export function encodeSafetensors(
  tensors: Record<string, TensorInput>,
  metadata?: Record<string, string>,
): Buffer {
  assertLittleEndianHost('encodeSafetensors');
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    if (!isPlainObject(metadata)) throw new TypeError('safetensors metadata must be an object of strings');
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') {
        throw new TypeError(`safetensors metadata ${JSON.stringify(key)} must be a string, got ${describe(value)}`);
      }
    }
    header[METADATA_KEY] = { ...metadata };
  }
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, tensor] of Object.entries(tensors)) {
    if (name === METADATA_KEY) throw new RangeError(`a tensor may not be named ${METADATA_KEY}`);
    const { dtype, shape, data } = tensor;
    const expectedArray = dtype === 'F32' ? Float32Array : dtype === 'F64' ? Float64Array : undefined;
    if (expectedArray === undefined) throw new RangeError(`tensor ${JSON.stringify(name)}: dtype must be F32 or F64, got ${describe(dtype)}`);
    if (!(data instanceof expectedArray)) {
      throw new TypeError(`tensor ${JSON.stringify(name)}: dtype ${dtype} needs a ${expectedArray.name}, got ${data?.constructor?.name ?? describe(data)}`);
    }
    if (!Array.isArray(shape) || !shape.every((n) => Number.isSafeInteger(n) && n >= 0)) {
      throw new RangeError(`tensor ${JSON.stringify(name)}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
    }
    const count = shape.reduce((a, b) => a * b, 1);
    if (count !== data.length) {
      throw new RangeError(`tensor ${JSON.stringify(name)}: shape [${shape.join(', ')}] holds ${count} values but the data has ${data.length}`);
    }
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    setOwn(header, name, { dtype, shape: [...shape], data_offsets: [offset, offset + bytes.length] });
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  let jsonBytes = Buffer.from(json, 'utf8');
  const padding = (8 - (jsonBytes.length % 8)) % 8;
  if (padding > 0) {
    json += ' '.repeat(padding);
    jsonBytes = Buffer.from(json, 'utf8');
  }
  const out = Buffer.alloc(8 + jsonBytes.length + offset);
  out.writeBigUInt64LE(BigInt(jsonBytes.length), 0);
  jsonBytes.copy(out, 8);
  let at = 8 + jsonBytes.length;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Decodes a safetensors file holding F32 and F64 tensors. Every tensor is
 * copied into its own freshly allocated (hence aligned) typed array, so the
 * result does not alias `bytes`. Throws {@link SafetensorsError} naming
 * `source` and what was expected whenever the file breaks the format.
 */
export function decodeSafetensors(bytes: Uint8Array, source: string): DecodedSafetensors {
  const fail = (message: string, cause?: unknown): never => {
    throw new SafetensorsError(`${source}: ${message}`, cause === undefined ? undefined : { cause });
  };
  assertLittleEndianHost(source);
  if (!(bytes instanceof Uint8Array)) fail(`expected the file's bytes as a Uint8Array, got ${describe(bytes)}`);
  if (bytes.length < 8) {
    fail(`file is ${bytes.length} bytes long; a safetensors file starts with an 8-byte header length`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Compare as BigInt: a u64 beyond 2^53 would silently lose precision as a number.
  const headerLength64 = view.getBigUint64(0, true);
  if (headerLength64 > BigInt(MAX_HEADER_BYTES)) {
    fail(`header length is ${headerLength64} bytes; expected at most ${MAX_HEADER_BYTES} (is this a safetensors file?)`);
  }
  const headerLength = Number(headerLength64);
  if (headerLength > bytes.length - 8) {
    fail(`header length is ${headerLength} bytes but only ${bytes.length - 8} bytes follow the length field (file truncated?)`);
  }
  let text: string;
  try {
    // ignoreBOM keeps a BOM in the text, where JSON.parse rejects it, as the reference reader does.
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(8, 8 + headerLength));
  } catch (e) {
    return fail('header is not valid UTF-8; expected a UTF-8 JSON object', e);
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message}); expected a JSON object`, e);
  }
  if (!isPlainObject(header)) fail(`header is ${describe(header)}; expected a JSON object mapping tensor names to entries`);
  const entries = header as Record<string, unknown>;

  const metadata: Record<string, string> = {};
  const rawMetadata = entries[METADATA_KEY];
  // The reference reader declares __metadata__ optional, so an explicit null means "none".
  if (rawMetadata !== undefined && rawMetadata !== null) {
    if (!isPlainObject(rawMetadata)) fail(`${METADATA_KEY} is ${describe(rawMetadata)}; expected an object of string values`);
    for (const [key, value] of Object.entries(rawMetadata as Record<string, unknown>)) {
      if (typeof value !== 'string') {
        fail(`${METADATA_KEY} entry ${JSON.stringify(key)} is ${describe(value)}; expected a string (safetensors metadata holds strings only)`);
      }
      setOwn(metadata, key, value as string);
    }
  }

  const dataStart = 8 + headerLength;
  const dataLength = bytes.length - dataStart;
  const ranges: { name: string; dtype: SafetensorsDtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(entries)) {
    if (name === METADATA_KEY) continue;
    const where = `tensor ${JSON.stringify(name)}`;
    if (!isPlainObject(entry)) fail(`${where} is ${describe(entry)}; expected an object with dtype, shape and data_offsets`);
    const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(`${where}: dtype is ${describe(dtype)}; expected a string such as "F32"`);
    if (!Array.isArray(shape)) fail(`${where}: shape is ${describe(shape)}; expected an array of non-negative integers`);
    const dims = shape as unknown[];
    dims.forEach((n, i) => {
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
        fail(`${where}: shape[${i}] is ${describe(n)}; expected a non-negative integer`);
      }
    });
    if (!Array.isArray(offsets) || offsets.length !== 2) {
      fail(`${where}: data_offsets is ${describe(offsets)}${Array.isArray(offsets) ? ` of length ${offsets.length}` : ''}; expected a pair [begin, end] of non-negative integers`);
    }
    const [begin, end] = offsets as unknown[];
    for (const [label, n] of [['begin', begin], ['end', end]] as const) {
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
        fail(`${where}: data_offsets ${label} is ${describe(n)}; expected a non-negative integer`);
      }
    }
    const b = begin as number;
    const e = end as number;
    if (b > e) fail(`${where}: data_offsets [${b}, ${e}] begin after end; expected begin <= end`);
    if (e > dataLength) fail(`${where}: data_offsets end ${e} lies beyond the data section, which is ${dataLength} bytes long`);
    if (!(dtype === 'F32' || dtype === 'F64')) {
      const kind = KNOWN_DTYPES.has(dtype as string) ? 'is not supported' : 'is not a safetensors dtype';
      fail(`${where}: dtype ${dtype} ${kind}; expected F32 or F64`);
    }
    const itemSize = ITEM_SIZE[dtype as SafetensorsDtype];
    const span = BigInt(e - b);
    const needed = bytesNeeded(dims as number[], itemSize, span);
    if (needed.bytes !== span) {
      const amount = needed.exact ? `${needed.bytes}` : `more than ${span}`;
      fail(`${where}: shape ${shapeText(dims as number[])} of ${dtype} needs ${amount} bytes but data_offsets [${b}, ${e}] span ${e - b}`);
    }
    ranges.push({ name, dtype: dtype as SafetensorsDtype, shape: [...(dims as number[])], begin: b, end: e });
  }

  // Empty tensors occupy no bytes, so they cannot overlap anything.
  const occupied = ranges.filter((r) => r.end > r.begin).sort((x, y) => x.begin - y.begin);
  for (let i = 1; i < occupied.length; i++) {
    const prev = occupied[i - 1];
    const cur = occupied[i];
    if (cur.begin < prev.end) {
      fail(
        `tensors ${JSON.stringify(prev.name)} [${prev.begin}, ${prev.end}] and ${JSON.stringify(cur.name)} ` +
          `[${cur.begin}, ${cur.end}] overlap; expected every tensor to have its own bytes`,
      );
    }
  }
  // Copy only now: with overlaps ruled out, the copies together are no larger than the file.
  const tensors = new Map<string, DecodedTensor>();
  for (const { name, dtype, shape, begin, end } of ranges) {
    const count = (end - begin) / ITEM_SIZE[dtype];
    const data = dtype === 'F32' ? new Float32Array(count) : new Float64Array(count);
    new Uint8Array(data.buffer).set(bytes.subarray(dataStart + begin, dataStart + end));
    tensors.set(name, { dtype, shape, data });
  }
  return { tensors, metadata };
}

