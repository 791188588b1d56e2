import { describe, expect, it } from 'vitest';
import {
  MAX_NARINFO_BYTES,
  formatNarInfo,
  narInfoFingerprint,
  parseNarInfo,
  type NarInfo,
} from '../../../src/cache/narinfo';
import { FULL_NARINFO, NIX_NARINFO_CONTENT_ADDRESSED, NIX_NARINFO_WITH_REFERENCES } from './fixtures';

const H = '0b8fd980k13nhvjkpmmli254dbr8k0a4';
const FILE_HASH = '1y1k1qn5lndfmgj5cqx13hm4nihqpfmxvsb9a3n983s29chwilyd';
const NAR_HASH = 'sha256:0dkhw3rngz4jwi4gx0jy8jf1lpdlbagv4z6mlx2yyq4lcgnbsi7l';

/** A minimal valid narinfo, one field per line, so tests can replace or drop lines. */
const MINIMAL: [string, string][] = [
  ['StorePath', `/nix/store/${H}-hello-2.12`],
  ['URL', `nar/${FILE_HASH}.nar.xz`],
  ['Compression', 'xz'],
  ['NarHash', NAR_HASH],
  ['NarSize', '21112'],
  ['References', ''],
];

function text(fields: [string, string][]): string {
  return fields.map(([k, v]) => `${k}: ${v}\n`).join('');
}
function withField(key: string, value: string): string {
  const fields = MINIMAL.filter(([k]) => k !== key);
  fields.push([key, value]);
  return text(fields);
}
function without(key: string): string {
  return text(MINIMAL.filter(([k]) => k !== key));
}
function ok(input: string): NarInfo {
  const parsed = parseNarInfo(input);
  if (!parsed.ok) throw new Error(`expected a valid narinfo, got: ${parsed.problem}`);
  return parsed.info;
}
function problemOf(input: string): string {
  const parsed = parseNarInfo(input);
  if (parsed.ok) throw new Error(`expected a refusal, got ${JSON.stringify(parsed.info)}`);
  return parsed.problem;
}

describe('parseNarInfo on narinfos Nix wrote', () => {
  it('reads every field of an input-addressed path with references and a deriver', () => {
    expect(ok(NIX_NARINFO_WITH_REFERENCES)).toEqual({
      storePath: '/nix/store/0b8fd980k13nhvjkpmmli254dbr8k0a4-fx-8eab2d72b673-top0',
      url: 'nar/1y1k1qn5lndfmgj5cqx13hm4nihqpfmxvsb9a3n983s29chwilyd.nar.xz',
      compression: 'xz',
      fileHash: 'sha256:1y1k1qn5lndfmgj5cqx13hm4nihqpfmxvsb9a3n983s29chwilyd',
      fileSize: 384,
      narHash: 'sha256:0dkhw3rngz4jwi4gx0jy8jf1lpdlbagv4z6mlx2yyq4lcgnbsi7l',
      narSize: 21112,
      references: [
        '/nix/store/ny6syja1g678qdx830ag4ip6vvdd360n-fx-8eab2d72b673-pair0',
        '/nix/store/qvxccg7yij6xiwihp90fyvpg7im79218-fx-8eab2d72b673-pair1',
      ],
      deriver: '/nix/store/lfacprk4hapvaiflqv8sha8f41ra1jk3-fx-8eab2d72b673.drv',
      sigs: ['test-cache-1:bhVuqoQ6svFkBCPM4FQSn2DlvPoRpgZKDUX3JeQwfXEa5a4DAztLMYAwWoYBB+h4zooDuILaagCUbRWA4fUBAg=='],
    });
  });

  it('reads a content-addressed path with an empty References line and a CA', () => {
    const info = ok(NIX_NARINFO_CONTENT_ADDRESSED);
    expect(info.references).toEqual([]);
    expect(info.deriver).toBeUndefined();
    expect(info.ca).toBe('fixed:sha256:06h8a9gk1cq82dfl06p3wyqfhchkwbyzl4acakf3blxwmqy8ahh3');
    expect(info.narSize).toBe(128);
  });

  it('reads every field it knows, two signatures included', () => {
    const info = ok(FULL_NARINFO);
    expect(info.references).toEqual([
      `/nix/store/${H}-fx-8eab2d72b673-top0`,
      '/nix/store/ny6syja1g678qdx830ag4ip6vvdd360n-fx-8eab2d72b673-pair0',
    ]);
    expect(info.sigs).toHaveLength(2);
    expect(info.sigs[1]).toBe('other-cache-2:AAAA');
    expect(info.ca).toBe('fixed:r:sha256:06h8a9gk1cq82dfl06p3wyqfhchkwbyzl4acakf3blxwmqy8ahh3');
  });
});

describe('formatNarInfo', () => {
  it.each([
    ['an input-addressed path', NIX_NARINFO_WITH_REFERENCES],
    ['a content-addressed path', NIX_NARINFO_CONTENT_ADDRESSED],
    ['every known field', FULL_NARINFO],
  ])('writes %s back byte for byte as Nix wrote it', (_label, input) => {
    expect(formatNarInfo(ok(input))).toBe(input);
  });

  it.each([
    ['an input-addressed path', NIX_NARINFO_WITH_REFERENCES],
    ['a content-addressed path', NIX_NARINFO_CONTENT_ADDRESSED],
    ['every known field', FULL_NARINFO],
    ['a minimal narinfo', text(MINIMAL)],
  ])('writes text that parses to an equal object (%s)', (_label, input) => {
    const info = ok(input);
    expect(ok(formatNarInfo(info))).toEqual(info);
  });

  it('writes references as base names and the deriver as a base name', () => {
    const out = formatNarInfo(ok(NIX_NARINFO_WITH_REFERENCES));
    expect(out).toContain(
      '\nReferences: ny6syja1g678qdx830ag4ip6vvdd360n-fx-8eab2d72b673-pair0 qvxccg7yij6xiwihp90fyvpg7im79218-fx-8eab2d72b673-pair1\n',
    );
    expect(out).toContain('\nDeriver: lfacprk4hapvaiflqv8sha8f41ra1jk3-fx-8eab2d72b673.drv\n');
    expect(out).not.toContain('/nix/store/ny6');
  });
});

describe('parseNarInfo normalises as Nix does', () => {
  it('takes a missing Compression to be bzip2, Nix’s default', () => {
    expect(ok(without('Compression')).compression).toBe('bzip2');
  });

  it('takes a missing References line to be no references', () => {
    expect(ok(without('References')).references).toEqual([]);
  });

  it('sorts references and drops duplicates', () => {
    const a = `${H}-a`;
    const z = `0c3y1v9zcgbl2xn8v7ns6hblkhsb3f1z-z`;
    expect(ok(withField('References', `${z} ${a} ${z}`)).references).toEqual([
      `/nix/store/${H}-a`,
      `/nix/store/0c3y1v9zcgbl2xn8v7ns6hblkhsb3f1z-z`,
    ]);
  });

  it('drops the unknown-deriver placeholder', () => {
    expect(ok(withField('Deriver', 'unknown-deriver')).deriver).toBeUndefined();
  });

  it('ignores keys it does not know, repeated or not, and System', () => {
    const info = ok(text(MINIMAL) + 'System: x86_64-linux\nFutureKey: a\nFutureKey: b\n');
    expect(info).toEqual(ok(text(MINIMAL)));
  });

  it('tolerates blank lines and a missing final newline', () => {
    expect(ok('\n\n' + text(MINIMAL).replace(/\n$/, ''))).toEqual(ok(text(MINIMAL)));
  });

  it('accepts a FileSize of 0 and every compression Nix writes', () => {
    expect(ok(withField('FileSize', '0')).fileSize).toBe(0);
    for (const c of ['none', 'xz', 'bzip2', 'zstd', 'br', 'gzip', 'lz4', 'lzip']) {
      expect(ok(withField('Compression', c)).compression).toBe(c);
    }
  });

  it('accepts 64 Sig lines', () => {
    const sigs = Array.from({ length: 64 }, (_, i) => `Sig: key-${i}:AAAA\n`).join('');
    expect(ok(text(MINIMAL) + sigs).sigs).toHaveLength(64);
  });
});

describe('parseNarInfo refuses, naming the field', () => {
  it.each([
    ['StorePath', 'StorePath is missing'],
    ['URL', 'URL is missing'],
    ['NarHash', 'NarHash is missing'],
    ['NarSize', 'NarSize is missing'],
  ])('a narinfo without %s', (key, expected) => {
    expect(problemOf(without(key))).toBe(expected);
  });

  it.each([
    ['outside /nix/store', `/gnu/store/${H}-hello`],
    ['relative', `nix/store/${H}-hello`],
    ['with a dot-dot segment', `/nix/store/../../etc/${H}-passwd`],
    ['naming a file inside a path', `/nix/store/${H}-hello/bin/hello`],
    ['with a trailing slash', `/nix/store/${H}-hello/`],
    ['with e in its hash', `/nix/store/${H.slice(0, 31)}e-hello`],
    ['with a 31-character hash', `/nix/store/${H.slice(1)}-hello`],
    ['with an upper-case hash', `/nix/store/${H.toUpperCase()}-hello`],
    ['without a name', `/nix/store/${H}`],
    ['with a name starting with a dot', `/nix/store/${H}-..`],
    ['with a space in its name', `/nix/store/${H}-a b`],
    ['with a name of 212 characters', `/nix/store/${H}-${'n'.repeat(212)}`],
  ])('a StorePath %s', (_label, value) => {
    expect(problemOf(withField('StorePath', value))).toBe('StorePath is not a valid store path');
  });

  it.each([
    ['a dot-dot segment', `nar/../${FILE_HASH}.nar.xz`],
    ['a leading dot-dot', `../nar/${FILE_HASH}.nar.xz`],
    ['dot-dot after the name', `nar/${FILE_HASH}.nar.xz/../../../etc/passwd`],
    ['an absolute path', `/nar/${FILE_HASH}.nar.xz`],
    ['a full URL', `https://cache.example.org/nar/${FILE_HASH}.nar.xz`],
    ['a directory other than nar/', `nars/${FILE_HASH}.nar.xz`],
    ['a subdirectory of nar/', `nar/x/${FILE_HASH}.nar.xz`],
    ['an extension other than .nar', `nar/${FILE_HASH}.tar`],
    ['a hash with e', `nar/${FILE_HASH.slice(0, 51)}e.nar`],
    ['a hash of 31 characters', `nar/${FILE_HASH.slice(0, 31)}.nar`],
    ['a hash of 53 characters', `nar/${FILE_HASH}0.nar`],
    ['a percent escape', `nar/%2e%2e/${FILE_HASH}.nar`],
    ['a backslash', `nar\\${FILE_HASH}.nar`],
  ])('a URL with %s', (_label, value) => {
    expect(problemOf(withField('URL', value))).toBe('URL is not nar/<hash>.nar[.<compression>]');
  });

  it.each(['rar', 'XZ', 'zst', '', 'none '])('Compression %j', (value) => {
    expect(problemOf(withField('Compression', value))).toMatch(/^Compression ".*" is not one Nix writes$/);
  });

  it.each([
    ['sha1', 'sha1:kpcd173cq987hw957sx6m0868wv3x6d9'],
    ['base-16 sha256', 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'],
    ['SRI', 'sha256-LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ='],
    ['51 characters', NAR_HASH.slice(0, -1)],
    ['a t', NAR_HASH.slice(0, -1) + 't'],
    ['no algorithm', NAR_HASH.slice('sha256:'.length)],
  ])('a NarHash in %s', (_label, value) => {
    expect(problemOf(withField('NarHash', value))).toBe('NarHash is not sha256:<52 base-32 characters>');
  });

  it('a FileHash not in sha256:<base-32>', () => {
    expect(problemOf(withField('FileHash', 'sha1:kpcd173cq987hw957sx6m0868wv3x6d9'))).toBe(
      'FileHash is not sha256:<52 base-32 characters>',
    );
  });

  it.each(['-1', '0', 'abc', '1.5', '1e3', '+5', '', ' 5', '0x10', '99999999999999999', '9007199254740993'])(
    'NarSize %j',
    (value) => {
      expect(problemOf(withField('NarSize', value))).toBe('NarSize is not a positive integer');
    },
  );

  it.each(['-1', 'abc', '1.5', ''])('FileSize %j', (value) => {
    expect(problemOf(withField('FileSize', value))).toBe('FileSize is not a non-negative integer');
  });

  it.each(['StorePath', 'URL', 'Compression', 'NarHash', 'NarSize', 'References', 'FileHash', 'System'])(
    'a second %s line',
    (key) => {
      const value = MINIMAL.find(([k]) => k === key)?.[1] ?? (key === 'FileHash' ? NAR_HASH : 'x86_64-linux');
      expect(problemOf(text(MINIMAL) + `${key}: ${value}\n${key}: ${value}\n`)).toBe(`${key} is given twice`);
    },
  );

  it('a second StorePath even when it repeats the first', () => {
    expect(problemOf(`StorePath: /nix/store/${H}-hello-2.12\n` + text(MINIMAL))).toBe('StorePath is given twice');
  });

  it.each([
    ['a slash inside', `${H}-hello/../../etc`],
    ['a full store path', `/nix/store/${H}-hello`],
    ['a dot-dot', '..'],
    ['a dot-dot after a valid name', `${H}-hello ..`],
    ['a bare hash', H],
    ['a hash with u', `${H.slice(0, 31)}u-hello`],
    ['two spaces between names', `${H}-a  ${H}-b`],
    ['a trailing space', `${H}-a `],
    ['a name starting with a dot', `${H}-.hidden`],
  ])('a reference with %s', (_label, value) => {
    expect(problemOf(withField('References', value))).toBe(
      'References holds something that is not a store path base name',
    );
  });

  it.each([
    ['not a .drv', `${H}-hello`],
    ['a full path', `/nix/store/${H}-hello.drv`],
    ['a slash inside', `${H}-x/../y.drv`],
    ['an invalid hash', `${H.slice(1)}-hello.drv`],
  ])('a Deriver %s', (_label, value) => {
    expect(problemOf(withField('Deriver', value))).toBe('Deriver is not the base name of a .drv store path');
  });

  it.each([
    ['a space', 'fixed:r:sha256 x'],
    ['non-ASCII', 'fixed:sha256:é'],
    ['513 characters', 'x'.repeat(513)],
    ['nothing', ''],
  ])('a CA with %s', (_label, value) => {
    expect(problemOf(withField('CA', value))).toBe('CA is malformed');
  });

  it.each([
    ['no key name', 'Sig: :AAAA'],
    ['no colon', 'Sig: AAAA'],
    ['a space', 'Sig: cache-1:AA AA'],
    ['not base64', 'Sig: cache-1:!!!!'],
    ['too much padding', 'Sig: cache-1:AA==='],
  ])('a Sig with %s', (_label, line) => {
    expect(problemOf(text(MINIMAL) + line + '\n')).toBe('a Sig line is not KEYNAME:BASE64');
  });

  it('65 Sig lines', () => {
    const sigs = Array.from({ length: 65 }, (_, i) => `Sig: key-${i}:AAAA\n`).join('');
    expect(problemOf(text(MINIMAL) + sigs)).toBe('the narinfo has more than 64 Sig lines');
  });
});

describe('parseNarInfo refuses malformed lines', () => {
  it.each([
    ['no space after the colon', `StorePath:/nix/store/${H}-hello`, 1],
    ['no colon', 'StorePath', 1],
    ['an empty key', ': value', 1],
    ['a tab instead of the space', `StorePath:\t/nix/store/${H}-hello`, 1],
  ])('a line with %s', (_label, line, n) => {
    expect(problemOf(line + '\n' + text(MINIMAL))).toBe(`line ${n} is not "Key: value"`);
  });

  it('names the number of the bad line', () => {
    expect(problemOf(text(MINIMAL) + 'garbage\n')).toBe(`line ${MINIMAL.length + 1} is not "Key: value"`);
  });

  it.each([
    ['a space', 'Store Path: x'],
    ['a NUL', 'Store\0Path: x'],
    ['a leading digit', '1Key: x'],
    ['a colon', 'A:B: x'],
    ['33 characters', `${'K'.repeat(33)}: x`],
  ])('a key with %s', (_label, line) => {
    expect(problemOf(line + '\n' + text(MINIMAL))).toBe('line 1 has a malformed key');
  });

  it.each([
    ['a NUL', `/nix/store/${H}-hello\0`],
    ['a carriage return (CRLF line ends)', `/nix/store/${H}-hello\r`],
    ['a tab', `/nix/store/${H}-hello\t`],
    ['DEL', `/nix/store/${H}-hello\x7f`],
  ])('a value with %s', (_label, value) => {
    expect(problemOf(withField('StorePath', value))).toBe('StorePath holds control characters');
  });

  it('a NUL in a key it would otherwise ignore', () => {
    expect(problemOf(text(MINIMAL) + 'Future: a\0b\n')).toBe('Future holds control characters');
  });
});

describe('parseNarInfo bounds its input', () => {
  function padded(bytes: number, filler: string): string {
    const base = text(MINIMAL) + 'Padding: ';
    const fillerBytes = Buffer.byteLength(filler, 'utf8');
    const room = bytes - Buffer.byteLength(base, 'utf8') - 1;
    const count = Math.floor(room / fillerBytes);
    const out = base + filler.repeat(count) + 'x'.repeat(room - count * fillerBytes) + '\n';
    expect(Buffer.byteLength(out, 'utf8')).toBe(bytes);
    return out;
  }

  it('accepts exactly MAX_NARINFO_BYTES', () => {
    expect(parseNarInfo(padded(MAX_NARINFO_BYTES, 'x')).ok).toBe(true);
  });

  it('refuses one byte more', () => {
    expect(problemOf(padded(MAX_NARINFO_BYTES + 1, 'x'))).toBe(`the narinfo is larger than ${MAX_NARINFO_BYTES} bytes`);
  });

  it('counts UTF-8 bytes, not characters', () => {
    const input = padded(MAX_NARINFO_BYTES + 3, '€'); // three bytes a character
    expect(input.length).toBeLessThan(MAX_NARINFO_BYTES);
    expect(problemOf(input)).toBe(`the narinfo is larger than ${MAX_NARINFO_BYTES} bytes`);
  });

  it('refuses more lines than it allows, even blank ones', () => {
    expect(problemOf(text(MINIMAL) + '\n'.repeat(20_200))).toBe('the narinfo has more than 20200 lines');
    expect(parseNarInfo(text(MINIMAL) + '\n'.repeat(20_000)).ok).toBe(true);
  });
});

describe('narInfoFingerprint', () => {
  it('is 1;path;NarHash;NarSize;full reference paths joined by commas', () => {
    expect(narInfoFingerprint(ok(NIX_NARINFO_WITH_REFERENCES))).toBe(
      '1;/nix/store/0b8fd980k13nhvjkpmmli254dbr8k0a4-fx-8eab2d72b673-top0;' +
        'sha256:0dkhw3rngz4jwi4gx0jy8jf1lpdlbagv4z6mlx2yyq4lcgnbsi7l;21112;' +
        '/nix/store/ny6syja1g678qdx830ag4ip6vvdd360n-fx-8eab2d72b673-pair0,' +
        '/nix/store/qvxccg7yij6xiwihp90fyvpg7im79218-fx-8eab2d72b673-pair1',
    );
  });

  it('ends in an empty field for a path without references', () => {
    expect(narInfoFingerprint(ok(NIX_NARINFO_CONTENT_ADDRESSED))).toBe(
      '1;/nix/store/hzc7460rd9hjkskb1llsj3jmfnc1mj4r-f.txt;sha256:11mv167i6962y21iizabrw5h9j9g8csr0h12banvj1lzp2g35ifl;128;',
    );
  });

  it('sorts references it is given unsorted', () => {
    const info = ok(NIX_NARINFO_WITH_REFERENCES);
    const reversed = { ...info, references: [...info.references].reverse() };
    expect(narInfoFingerprint(reversed)).toBe(narInfoFingerprint(info));
  });
});
