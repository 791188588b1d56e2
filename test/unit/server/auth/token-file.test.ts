import { describe, expect, it } from 'vitest';
import { bearerToken, parseTokenFile, tokenDigest } from '../../../../src/server/auth/token-file';

const T1 = '0123456789abcdef0123';
const T2 = 'fedcba9876543210fedc';

describe('token file', () => {
  it.each([
    [
      'named and bare tokens, comments and blank lines',
      `# CI\nci-bot:${T1}\n\n  ${T2}  \n`,
      [
        { name: 'ci-bot', digest: tokenDigest(T1), push: 'none' },
        { name: `token-${tokenDigest(T2).slice(0, 8)}`, digest: tokenDigest(T2), push: 'none' },
      ],
      [],
    ],
    [
      'CRLF line ends',
      `a:${T1}\r\nb:${T2}\r\n`,
      [
        { name: 'a', digest: tokenDigest(T1), push: 'none' },
        { name: 'b', digest: tokenDigest(T2), push: 'none' },
      ],
      [],
    ],
    [
      'a token holding a colon after a name',
      `dev:${T1}:x`,
      [{ name: 'dev', digest: tokenDigest(`${T1}:x`), push: 'none' }],
      [],
    ],
    [
      'push rights after a space',
      `dev:${T1} push\nci:${T2}\tpush,push-unsigned`,
      [
        { name: 'dev', digest: tokenDigest(T1), push: 'push' },
        { name: 'ci', digest: tokenDigest(T2), push: 'push-unsigned' },
      ],
      [],
    ],
    [
      'an unknown right',
      `dev:${T1} admin`,
      [],
      [
        'line 1: expected TOKEN or NAME:TOKEN, then optionally a space and rights; what follows the space is not a list of rights (known: push, push-unsigned)',
      ],
    ],
    [
      'two words after the token',
      `dev:${T1} push more`,
      [],
      ['line 1: expected TOKEN or NAME:TOKEN, then optionally one space and RIGHTS (push or push,push-unsigned)'],
    ],
    [
      'a space inside the token',
      `ci bot:${T1}`,
      [],
      [
        'line 1: expected TOKEN or NAME:TOKEN, then optionally a space and rights; what follows the space is not a list of rights (known: push, push-unsigned)',
      ],
    ],
    [
      'a short token',
      'ci:short',
      [],
      ['line 1: the token is shorter than 16 characters (use e.g. `openssl rand -hex 16`)'],
    ],
    [
      'the same token twice',
      `a:${T1}\nb:${T1}`,
      [{ name: 'a', digest: tokenDigest(T1), push: 'none' }],
      ['line 2: the same token as line 1'],
    ],
    ['nothing but comments', '# none yet\n', [], []],
  ])('%s', (_name, text, entries, problems) => {
    expect(parseTokenFile(text)).toEqual({ entries, problems });
  });

  it('keeps only digests: no token text appears in what it returns, problems included', () => {
    expect(JSON.stringify(parseTokenFile(`ci:${T1}\n${T2}\nci bot:${T1}x\nx ${T2}y`))).not.toMatch(
      new RegExp(`${T1}|${T2}`),
    );
  });
});

describe('bearer header', () => {
  it.each([
    [`Bearer ${T1}`, T1],
    [`bearer ${T1}`, T1],
    [`BEARER   ${T1} `, T1],
    [`Basic ${T1}`, undefined],
    ['Bearer', undefined],
    ['Bearer a b', undefined],
    [undefined, undefined],
    [[`Bearer ${T1}`, `Bearer ${T2}`], undefined],
  ])('%j -> %j', (header, token) => {
    expect(bearerToken(header as string | string[] | undefined)).toBe(token);
  });
});
