import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findStorePaths, scanStorePaths } from '../../../src/nix/reference-scanner';
import {
  MAX_NAME_LENGTH,
  NIXBASE32_ALPHABET,
  STORE_PREFIX,
  isStorePath,
  parseStorePath,
  storePathOf,
} from '../../../src/nix/store-path';

/**
 * Properties of the store-path parser and the reference scanner over
 * arbitrary and adversarial input, and the hostile corpus
 * (test/corpus/hostile/store-path-strings.json) as a table.
 */

interface CorpusCase {
  name: string;
  text?: string;
  hex?: string;
  paths: string[];
}

const CORPUS = (
  JSON.parse(readFileSync(join(__dirname, '..', '..', 'corpus', 'hostile', 'store-path-strings.json'), 'utf8')) as {
    cases: CorpusCase[];
  }
).cases;

const NAME_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-._?=';
const SHELL_AND_PATH_SPECIALS = [
  ';',
  '$',
  '(',
  ')',
  '`',
  '|',
  '&',
  '<',
  '>',
  '\n',
  '\r',
  '\0',
  ' ',
  '\t',
  '"',
  "'",
  '\\',
  '/',
  '*',
  '%',
  '!',
  '#',
  '{',
  '}',
  '[',
  ']',
  '~',
  '^',
  ',',
];

const hashArb = fc.string({ unit: fc.constantFrom(...NIXBASE32_ALPHABET), minLength: 32, maxLength: 32 });
const nameArb = fc
  .string({ unit: fc.constantFrom(...NAME_CHARS), minLength: 1, maxLength: MAX_NAME_LENGTH })
  .filter((n) => !n.startsWith('.'));
const storePathArb = fc.tuple(hashArb, nameArb).map(([h, n]) => `${STORE_PREFIX}${h}-${n}`);

/** Text that mixes store-path pieces, valid paths and specials, so candidates and near-misses are frequent. */
const noisyTextArb = fc
  .array(
    fc.oneof(
      storePathArb,
      fc.constantFrom(STORE_PREFIX, '/nix/store', '/nix/', '-', '.', '..', '/', ...SHELL_AND_PATH_SPECIALS),
      hashArb,
      fc.string({ unit: fc.constantFrom(...NAME_CHARS), maxLength: 8 }),
      fc.string({ unit: 'binary', maxLength: 4 }),
    ),
    { maxLength: 30 },
  )
  .map((parts) => parts.join(''));

/** Every store path in `input`, found the slow and obvious way: try each occurrence of the prefix. */
function oracle(input: Buffer): Set<string> {
  const text = input.toString('latin1');
  const out = new Set<string>();
  const re = new RegExp(`^/nix/store/[${NIXBASE32_ALPHABET}]{32}-([A-Za-z0-9+._?=-]+)`);
  for (let i = text.indexOf(STORE_PREFIX); i !== -1; i = text.indexOf(STORE_PREFIX, i + 1)) {
    const m = re.exec(text.slice(i, i + STORE_PREFIX.length + 33 + MAX_NAME_LENGTH + 1));
    if (m && !m[1]!.startsWith('.') && m[1]!.length <= MAX_NAME_LENGTH) out.add(m[0]);
  }
  return out;
}

describe('store-path parser', () => {
  it('accepts every well-formed path and splits it into hash and name', () => {
    fc.assert(
      fc.property(hashArb, nameArb, (hash, name) => {
        const parsed = parseStorePath(`${STORE_PREFIX}${hash}-${name}`);
        expect(parsed).toEqual({ path: `${STORE_PREFIX}${hash}-${name}`, hash, name });
      }),
    );
  });

  it('refuses a well-formed path with any character outside the name alphabet put anywhere in its name', () => {
    fc.assert(
      fc.property(
        storePathArb,
        fc.constantFrom(...SHELL_AND_PATH_SPECIALS, '\u00e9', '\u200b', '\ufffd'),
        fc.nat(),
        (path, bad, at) => {
          const nameStart = STORE_PREFIX.length + 33;
          const pos = nameStart + (at % (path.length - nameStart + 1));
          expect(parseStorePath(path.slice(0, pos) + bad + path.slice(pos))).toBeUndefined();
        },
      ),
    );
  });

  it('never accepts a string holding a shell or path special, whatever else it holds', () => {
    fc.assert(
      fc.property(noisyTextArb, (s) => {
        const parsed = parseStorePath(s);
        if (parsed === undefined) return;
        for (const c of SHELL_AND_PATH_SPECIALS) if (c !== '/') expect(parsed.name.includes(c)).toBe(false);
        expect(parsed.path.split('/')).toHaveLength(4);
        expect(parsed.name.startsWith('.')).toBe(false);
        expect(parsed.name.length).toBeLessThanOrEqual(MAX_NAME_LENGTH);
      }),
      { numRuns: 2000 },
    );
  });

  it('maps a path inside a store path to the store path, and nothing else to one', () => {
    fc.assert(
      fc.property(storePathArb, fc.string({ unit: 'binary', maxLength: 40 }), (path, rest) => {
        expect(storePathOf(`${path}/${rest}`)).toBe(path);
        expect(storePathOf(path)).toBe(path);
        const other = storePathOf(rest);
        if (other !== undefined) expect(isStorePath(other)).toBe(true);
      }),
    );
  });
});

describe('reference scanner', () => {
  it('finds exactly what trying every occurrence of /nix/store/ finds, on noisy text', () => {
    fc.assert(
      fc.property(noisyTextArb, (text) => {
        const bytes = Buffer.from(text, 'utf8');
        expect(new Set(findStorePaths(bytes))).toEqual(oracle(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it('finds exactly what the oracle finds on arbitrary bytes seeded with prefixes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.uint8Array({ maxLength: 16 }),
            fc.constant(Buffer.from(STORE_PREFIX)),
            storePathArb.map((p) => Buffer.from(p)),
          ),
        ),
        (parts) => {
          const bytes = Buffer.concat(parts);
          expect(new Set(findStorePaths(bytes))).toEqual(oracle(bytes));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('only ever returns paths the strict parser accepts, each present in the input', () => {
    fc.assert(
      fc.property(noisyTextArb, (text) => {
        for (const p of findStorePaths(text)) {
          expect(isStorePath(p)).toBe(true);
          expect(text.includes(p)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('gives the same answer for a string and its UTF-8 bytes', () => {
    fc.assert(
      fc.property(noisyTextArb, (text) => {
        expect(findStorePaths(text)).toEqual(findStorePaths(Buffer.from(text, 'utf8')));
      }),
    );
  });

  it('finds an embedded path whatever surrounds it, when a non-name character follows it', () => {
    fc.assert(
      fc.property(
        fc.string({ unit: 'binary', maxLength: 20 }),
        storePathArb,
        fc.constantFrom(...SHELL_AND_PATH_SPECIALS),
        fc.string({ unit: 'binary', maxLength: 20 }),
        (before, path, stop, after) => {
          expect(findStorePaths(`${before}${path}${stop}${after}`)).toContain(path);
        },
      ),
    );
  });

  it('stops at maxDistinct, reporting that it stopped, and never holds more', () => {
    fc.assert(
      fc.property(fc.uniqueArray(storePathArb, { minLength: 1, maxLength: 30 }), fc.nat({ max: 30 }), (paths, max) => {
        const into = new Set<string>();
        const complete = scanStorePaths(paths.join(' '), into, max);
        expect(into.size).toBeLessThanOrEqual(max);
        expect(complete).toBe(paths.length <= max);
      }),
    );
  });

  it.each(CORPUS.map((c) => [c.name, c]))('hostile corpus: %s', (_name, c) => {
    const bytes = c.hex !== undefined ? Buffer.from(c.hex, 'hex') : Buffer.from(c.text!, 'utf8');
    expect(new Set(findStorePaths(bytes))).toEqual(new Set(c.paths));
    expect(new Set(findStorePaths(bytes))).toEqual(oracle(bytes));
  });
});
