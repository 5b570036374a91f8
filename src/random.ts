/**
 * Seeded pseudo-random numbers. Everything random in rntn (initialisation,
 * shuffling, test data) draws from this one generator so that a seed fixes a
 * run completely and the generator's state can be checkpointed as four words.
 *
 * The generator is xoshiro128** (Blackman & Vigna), seeded through splitmix32
 * so that nearby seeds give unrelated streams.
 */
export class Random {
  private s: Uint32Array;

  constructor(seed: number | Uint32Array = 1) {
    if (seed instanceof Uint32Array) {
      if (seed.length !== 4 || seed.every((w) => w === 0)) {
        throw new RangeError('Random state must be four 32-bit words, not all zero');
      }
      this.s = Uint32Array.from(seed);
      return;
    }
    if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
    this.s = new Uint32Array(4);
    let x = (seed >>> 0) ^ Math.floor(seed / 2 ** 32);
    for (let i = 0; i < 4; i++) {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if (this.s.every((w) => w === 0)) this.s[0] = 1;
  }

  /** The generator's state, to be stored in a checkpoint and passed back to the constructor. */
  get state(): Uint32Array {
    return Uint32Array.from(this.s);
  }

  /** A uniformly distributed 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform in [-r, r). */
  symmetric(r: number): number {
    return (2 * this.next() - 1) * r;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new RangeError(`int(n) needs a positive integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Fisher–Yates shuffle in place. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i];
      items[i] = items[j];
      items[j] = tmp;
    }
    return items;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
