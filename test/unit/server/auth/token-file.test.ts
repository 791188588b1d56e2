import { describe, expect, it } from 'vitest';
import { bearerToken, parseTokenFile, tokenDigest } from '../../../../src/server/auth/token-file';

const T1 = '0123456789abcdef0123';
const T2 = 'fedcba9876543210fedc';

describe('token file', () => {
  it.each([
    ['named and bare tokens, comments and blank lines', `# CI\nci-bot:${T1}\n\n  ${T2}  \n`, [
      { name: 'ci-bot', digest: tokenDigest(T1) },
      { name: `token-${tokenDigest(T2).slice(0, 8)}`, digest: tokenDigest(T2) },
    ], []],
    ['CRLF line ends', `a:${T1}\r\nb:${T2}\r\n`, [{ name: 'a', digest: tokenDigest(T1) }, { name: 'b', digest: tokenDigest(T2) }], []],
    ['a token holding a colon after a name', `dev:${T1}:x`, [{ name: 'dev', digest: tokenDigest(`${T1}:x`) }], []],
    ['a space inside the token', `ci bot:${T1}`, [], ['line 1: expected TOKEN or NAME:TOKEN without spaces']],
    ['a short token', 'ci:short', [], ['line 1: the token is shorter than 16 characters (use e.g. `openssl rand -hex 16`)']],
    ['the same token twice', `a:${T1}\nb:${T1}`, [{ name: 'a', digest: tokenDigest(T1) }], ['line 2: the same token as line 1']],
    ['nothing but comments', '# none yet\n', [], []],
  ])('%s', (_name, text, entries, problems) => {
    expect(parseTokenFile(text)).toEqual({ entries, problems });
  });

  it('keeps only digests: no token text appears in what it returns', () => {
    expect(JSON.stringify(parseTokenFile(`ci:${T1}\n${T2}`))).not.toMatch(new RegExp(`${T1}|${T2}`));
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
