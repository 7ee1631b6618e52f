/**
 * 128-bit fingerprints of event identities (`source\nid`), and a set of them held in typed
 * arrays: millions of them cost 16 bytes each and nothing to the garbage collector, where a
 * Set of strings costs about 80 bytes each and a GC walk over every one. At 128 bits the
 * chance that any two different identities in a window collide is below 10^-20 even for
 * billions of events: a fresh event is never mistaken for a duplicate in practice.
 */

/** Words per fingerprint. */
export const FINGERPRINT_WORDS = 4;

const C1 = 0x239b961b;
const C2 = 0xab0e9789;
const C3 = 0x38b34ae5;
const C4 = 0xa1e38b93;

const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));

function fmix(h: number): number {
  let x = h;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  return x ^ (x >>> 16);
}

/** One 32-bit key word scrambled with the lane's constants and rotation (MurmurHash3's k-mix). */
const mixKey = (k: number, c1: number, r: number, c2: number) => Math.imul(rotl(Math.imul(k, c1), r), c2);

/** Word `j` of `text` read as UTF-16 code units, two per 32-bit word (0 past the end): for the tail. */
const wordAt = (text: string, j: number) =>
  ((text.charCodeAt(2 * j) || 0) | ((text.charCodeAt(2 * j + 1) || 0) << 16)) >>> 0;

/**
 * Writes the fingerprint of `text` to `out[at..at+3]`: MurmurHash3 (x86, 128-bit) over its
 * UTF-16 code units. Persisted for hand-over between aggregators: changing it needs a new
 * dedup key prefix.
 */
export function fingerprint(text: string, out: Uint32Array, at: number): void {
  let h1 = 0x6b6d6574; // seed: "kmet"
  let h2 = h1;
  let h3 = h1;
  let h4 = h1;
  const words = (text.length + 1) >> 1;
  const blocks = words >> 2;
  for (let b = 0; b < blocks; b++) {
    // Whole blocks are inside the text: eight code units read directly.
    const c = b * 8;
    h1 ^= mixKey(text.charCodeAt(c) | (text.charCodeAt(c + 1) << 16), C1, 15, C2);
    h1 = (Math.imul(rotl(h1, 19) + h2, 5) + 0x561ccd1b) | 0;
    h2 ^= mixKey(text.charCodeAt(c + 2) | (text.charCodeAt(c + 3) << 16), C2, 16, C3);
    h2 = (Math.imul(rotl(h2, 17) + h3, 5) + 0x0bcaa747) | 0;
    h3 ^= mixKey(text.charCodeAt(c + 4) | (text.charCodeAt(c + 5) << 16), C3, 17, C4);
    h3 = (Math.imul(rotl(h3, 15) + h4, 5) + 0x96cd1c35) | 0;
    h4 ^= mixKey(text.charCodeAt(c + 6) | (text.charCodeAt(c + 7) << 16), C4, 18, C1);
    h4 = (Math.imul(rotl(h4, 13) + h1, 5) + 0x32ac3b17) | 0;
  }
  const tail = blocks * 4;
  if (tail < words) {
    h1 ^= mixKey(wordAt(text, tail), C1, 15, C2);
    h2 ^= mixKey(wordAt(text, tail + 1), C2, 16, C3);
    h3 ^= mixKey(wordAt(text, tail + 2), C3, 17, C4);
    h4 ^= mixKey(wordAt(text, tail + 3), C4, 18, C1);
  }
  const length = text.length * 2;
  h1 ^= length;
  h2 ^= length;
  h3 ^= length;
  h4 ^= length;
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h3 = fmix(h3);
  h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  const w0 = h1 >>> 0;
  const w1 = (h2 + h1) >>> 0;
  const w2 = (h3 + h1) >>> 0;
  const w3 = (h4 + h1) >>> 0;
  out[at] = w0;
  out[at + 1] = w1;
  out[at + 2] = w2;
  // All-zero marks an empty slot in FingerprintSet: the one fingerprint that is all zero is nudged.
  out[at + 3] = w0 === 0 && w1 === 0 && w2 === 0 && w3 === 0 ? 1 : w3;
}

/** A list of fingerprints, growing as they are pushed. */
export class FingerprintList {
  words: Uint32Array;
  count = 0;

  constructor(capacity = 1024) {
    this.words = new Uint32Array(Math.max(1, capacity) * FINGERPRINT_WORDS);
  }

  /** Appends the fingerprint of `text`; returns its index. */
  push(text: string): number {
    if ((this.count + 1) * FINGERPRINT_WORDS > this.words.length) {
      const grown = new Uint32Array(this.words.length * 2);
      grown.set(this.words);
      this.words = grown;
    }
    fingerprint(text, this.words, this.count * FINGERPRINT_WORDS);
    return this.count++;
  }

  /** Drops the last fingerprint pushed. */
  pop(): void {
    if (this.count > 0) this.count--;
  }

  /** The fingerprints as bytes (16 per fingerprint), for Redis. */
  toBuffer(): Buffer {
    return Buffer.from(this.words.buffer, this.words.byteOffset, this.count * FINGERPRINT_WORDS * 4);
  }
}

/** A hash set of fingerprints: open addressing over one Uint32Array, linear probing. */
export class FingerprintSet {
  private slots: Uint32Array;
  private mask: number;
  size = 0;

  constructor(capacity = 1024) {
    let slots = 16;
    while (slots < capacity * 2) slots *= 2;
    this.slots = new Uint32Array(slots * FINGERPRINT_WORDS);
    this.mask = slots - 1;
  }

  /** True when the set holds fingerprint `index` of `list`. */
  has(list: FingerprintList, index: number): boolean {
    return this.slotOf(list.words, index * FINGERPRINT_WORDS) >= 0;
  }

  /** Adds fingerprint `index` of `list`; false when it was there already. */
  add(list: FingerprintList, index: number): boolean {
    return this.addWords(list.words, index * FINGERPRINT_WORDS);
  }

  private addWords(words: Uint32Array, at: number): boolean {
    const slot = this.slotOf(words, at);
    if (slot >= 0) return false;
    const free = -slot - 1;
    const s = this.slots;
    s[free] = words[at] ?? 0;
    s[free + 1] = words[at + 1] ?? 0;
    s[free + 2] = words[at + 2] ?? 0;
    s[free + 3] = words[at + 3] ?? 0;
    if (++this.size * 2 > this.mask + 1) this.grow();
    return true;
  }

  /** Adds every fingerprint of a persisted blob (16 bytes each). */
  addAll(bytes: Buffer): void {
    const count = Math.floor(bytes.length / (FINGERPRINT_WORDS * 4));
    const words = new Uint32Array(count * FINGERPRINT_WORDS);
    Buffer.from(words.buffer).set(bytes.subarray(0, count * FINGERPRINT_WORDS * 4));
    for (let i = 0; i < count; i++) this.addWords(words, i * FINGERPRINT_WORDS);
  }

  /** The slot index holding the fingerprint, or -(free slot index) - 1 where it would go. */
  private slotOf(words: Uint32Array, at: number): number {
    const w0 = words[at] ?? 0;
    const w1 = words[at + 1] ?? 0;
    const w2 = words[at + 2] ?? 0;
    const w3 = words[at + 3] ?? 0;
    const s = this.slots;
    for (let i = w0 & this.mask; ; i = (i + 1) & this.mask) {
      const p = i * FINGERPRINT_WORDS;
      const s0 = s[p] ?? 0;
      const s1 = s[p + 1] ?? 0;
      const s2 = s[p + 2] ?? 0;
      const s3 = s[p + 3] ?? 0;
      if (s0 === w0 && s1 === w1 && s2 === w2 && s3 === w3) return p;
      if (s0 === 0 && s1 === 0 && s2 === 0 && s3 === 0) return -p - 1;
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Uint32Array(old.length * 2);
    this.mask = this.slots.length / FINGERPRINT_WORDS - 1;
    this.size = 0;
    for (let p = 0; p < old.length; p += FINGERPRINT_WORDS) {
      if (old[p] || old[p + 1] || old[p + 2] || old[p + 3]) this.addWords(old, p);
    }
  }
}
