import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decodeNixBase32, encodeNixBase32, nixBase32Length } from '../../../src/cache/nix-base32';

function digest(algorithm: string, text: string): Buffer {
  return createHash(algorithm).update(text, 'utf8').digest();
}

// Expected values printed by Nix 2.8: `nix-hash --type <alg> --flat --base32 <file>`.
const NIX_VECTORS: [string, string, string][] = [
  ['sha256', 'hello', '094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic'],
  ['sha256', 'abc', '1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s'],
  ['sha256', '', '0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73'],
  ['sha1', 'abc', 'kpcd173cq987hw957sx6m0868wv3x6d9'],
  ['md5', 'abc', '3jgzhjhz9zjvbb0kyj7jc500ch'],
  [
    'sha512',
    'abc',
    '2gs8k559z4rlahfx0y688s49m2vvszylcikrfinm30ly9rak69236nkam5ydvly1ai7xac99vxfc4ii84hawjbk876blyk1jfhkbbyx',
  ],
];

describe('nixBase32Length', () => {
  it.each([
    [0, 0],
    [1, 2],
    [16, 26],
    [20, 32],
    [32, 52],
    [64, 103],
  ])('%i bytes take %i characters', (bytes, chars) => {
    expect(nixBase32Length(bytes)).toBe(chars);
  });
});

describe('encodeNixBase32', () => {
  it.each(NIX_VECTORS)('encodes %s(%j) as Nix prints it', (algorithm, text, expected) => {
    expect(encodeNixBase32(digest(algorithm, text))).toBe(expected);
  });

  it('encodes the empty byte string as the empty string', () => {
    expect(encodeNixBase32(new Uint8Array(0))).toBe('');
  });

  it('encodes 20 bytes (a store path hash) in 32 characters of the alphabet without e, o, u, t', () => {
    const text = encodeNixBase32(digest('sha1', 'store path'));
    expect(text).toHaveLength(32);
    expect(text).toMatch(/^[0-9a-df-np-sv-z]{32}$/);
  });

  it('takes characters from the end of the byte string first', () => {
    const bytes = new Uint8Array(20);
    bytes[0] = 1; // the lowest 5-bit digit, written last
    expect(encodeNixBase32(bytes)).toBe('0'.repeat(31) + '1');
    bytes[0] = 0;
    bytes[19] = 0x80; // the highest bit, written first
    expect(encodeNixBase32(bytes)).toBe('h' + '0'.repeat(31));
  });
});

describe('decodeNixBase32', () => {
  it.each(NIX_VECTORS)('decodes Nix’s %s(%j) back to the digest', (algorithm, text, encoded) => {
    const bytes = digest(algorithm, text);
    expect(decodeNixBase32(encoded, bytes.length)).toEqual(bytes);
  });

  it('round-trips byte strings of every length up to 64', () => {
    for (let n = 0; n <= 64; n++) {
      const bytes = digest('sha512', `input ${n}`).subarray(0, n);
      const text = encodeNixBase32(bytes);
      expect(decodeNixBase32(text, n), `length ${n}`).toEqual(Buffer.from(bytes));
    }
  });

  it('decodes the empty string as zero bytes', () => {
    expect(decodeNixBase32('', 0)).toEqual(Buffer.alloc(0));
  });

  it.each(['e', 'o', 'u', 't', 'A', '-', ' '])('rejects %j, which is not in Nix’s alphabet', (c) => {
    const valid = encodeNixBase32(digest('sha256', 'hello'));
    expect(decodeNixBase32(valid.slice(0, 10) + c + valid.slice(11), 32)).toBeUndefined();
  });

  it('rejects a text of the wrong length for the byte count', () => {
    const valid = encodeNixBase32(digest('sha256', 'hello'));
    expect(decodeNixBase32(valid, 20)).toBeUndefined();
    expect(decodeNixBase32(valid.slice(1), 32)).toBeUndefined();
    expect(decodeNixBase32(valid + '0', 32)).toBeUndefined();
  });

  it('rejects a first character carrying bits beyond the byte count', () => {
    // 52 characters hold 260 bits; for 32 bytes the first may only be 0 or 1.
    const valid = encodeNixBase32(digest('sha256', 'abc'));
    expect(decodeNixBase32('1' + valid.slice(1), 32)).toBeDefined();
    expect(decodeNixBase32('2' + valid.slice(1), 32)).toBeUndefined();
    expect(decodeNixBase32('z' + valid.slice(1), 32)).toBeUndefined();
  });
});
