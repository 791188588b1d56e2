import { describe, expect, it } from 'vitest';
import { CacheAccess, pushRefusal, type RequestFacts, type TokenEntries } from '../../../src/cache/cache-access';
import type { PushRight } from '../../../src/server/auth/token-file';

const READER = 'r'.repeat(32);
const PUSHER = 'p'.repeat(32);
const UNSIGNED_PUSHER = 'u'.repeat(32);

/** The token lookup CacheAccess is given, as a map. */
function tokens(entries: Record<string, { name: string; push: PushRight }>): TokenEntries & { asked: string[] } {
  const asked: string[] = [];
  return {
    asked,
    entry(token) {
      asked.push(token);
      return entries[token];
    },
  };
}

const TOKENS = {
  [READER]: { name: 'reader', push: 'none' as const },
  [PUSHER]: { name: 'dev-alice', push: 'push' as const },
  [UNSIGNED_PUSHER]: { name: 'ci-bot', push: 'push-unsigned' as const },
};

function facts(over: Partial<RequestFacts> = {}): RequestFacts {
  return { authorization: undefined, certificateSubject: undefined, address: '192.0.2.7', ...over };
}

describe('CacheAccess with authTokensFile', () => {
  it.each([
    [READER, 'reader', undefined],
    [PUSHER, 'dev-alice', 'push'],
    [UNSIGNED_PUSHER, 'ci-bot', 'push-unsigned'],
  ])('knows the client by the token’s name and gives it the line’s right (%#)', (token, client, push) => {
    const access = new CacheAccess({ tokens: tokens(TOKENS), pushSubjects: [] });
    expect(access.identify(facts({ authorization: `Bearer ${token}` }))).toEqual({ ok: true, client, push });
  });

  it('reads the token from HTTP Basic, as Nix sends it from a netrc file', () => {
    const lookup = tokens(TOKENS);
    const access = new CacheAccess({ tokens: lookup, pushSubjects: [] });
    const header = `Basic ${Buffer.from(`whoever:${PUSHER}`).toString('base64')}`;
    expect(access.identify(facts({ authorization: header }))).toEqual({ ok: true, client: 'dev-alice', push: 'push' });
    expect(lookup.asked).toEqual([PUSHER]);
  });

  it('refuses a request without a token 401, saying how to send one', () => {
    const access = new CacheAccess({ tokens: tokens(TOKENS), pushSubjects: [] });
    const result = access.identify(facts());
    expect(result).toMatchObject({ ok: false, status: 401 });
    expect(!result.ok && result.message).toContain('netrc');
  });

  it('refuses an unknown token 401 without quoting it', () => {
    const secret = 'x'.repeat(32);
    const access = new CacheAccess({ tokens: tokens(TOKENS), pushSubjects: [] });
    const result = access.identify(facts({ authorization: `Bearer ${secret}` }));
    expect(result).toMatchObject({ ok: false, status: 401 });
    expect(!result.ok && result.message).toContain('authTokensFile');
    expect(!result.ok && result.message).not.toContain(secret);
  });

  it('needs a token even from a client certificate listed in cachePushSubjects', () => {
    const access = new CacheAccess({ tokens: tokens(TOKENS), pushSubjects: ['builder-1'] });
    expect(access.identify(facts({ certificateSubject: 'builder-1' }))).toMatchObject({ ok: false, status: 401 });
    expect(access.identify(facts({ certificateSubject: 'builder-1', authorization: `Bearer ${READER}` }))).toEqual({
      ok: true,
      client: 'reader',
      push: undefined,
    });
  });
});

describe('CacheAccess without authTokensFile', () => {
  it('lets anyone read, known by address, without the push right', () => {
    const access = new CacheAccess({ pushSubjects: ['builder-1'] });
    expect(access.identify(facts())).toEqual({ ok: true, client: '192.0.2.7', push: undefined });
  });

  it('ignores an Authorization header it has no tokens to check against', () => {
    const access = new CacheAccess({ pushSubjects: [] });
    expect(access.identify(facts({ authorization: `Bearer ${PUSHER}` }))).toEqual({
      ok: true,
      client: '192.0.2.7',
      push: undefined,
    });
  });

  it.each([
    ['NAME', ['builder-1'], 'push'],
    ['NAME=push', ['builder-1=push'], 'push'],
    ['NAME=push-unsigned', ['builder-1=push-unsigned'], 'push-unsigned'],
    ['the last listing of a name', ['builder-1', 'builder-1=push-unsigned'], 'push-unsigned'],
  ])('gives a certificate subject listed as %s its right', (_label, pushSubjects, push) => {
    const access = new CacheAccess({ pushSubjects });
    expect(access.identify(facts({ certificateSubject: 'builder-1' }))).toEqual({
      ok: true,
      client: 'builder-1',
      push,
    });
  });

  it('knows a certificate not listed by its subject, without the push right', () => {
    const access = new CacheAccess({ pushSubjects: ['builder-1'] });
    expect(access.identify(facts({ certificateSubject: 'laptop-7' }))).toEqual({
      ok: true,
      client: 'laptop-7',
      push: undefined,
    });
  });

  it('does not give builder-1=push-unsigned’s right to a subject named builder-1=push-unsigned', () => {
    const access = new CacheAccess({ pushSubjects: ['builder-1=push-unsigned'] });
    expect(access.identify(facts({ certificateSubject: 'builder-1=push-unsigned' }))).toEqual({
      ok: true,
      client: 'builder-1=push-unsigned',
      push: undefined,
    });
  });
});

describe('pushRefusal', () => {
  it('tells a token holder its line needs the push right', () => {
    expect(pushRefusal('reader', true)).toContain("client 'reader' may read this binary cache but not push to it");
    expect(pushRefusal('reader', true)).toContain("'NAME:TOKEN push'");
  });

  it('without tokens, names both ways of getting the push right', () => {
    const message = pushRefusal('192.0.2.7', false);
    expect(message).toContain('authTokensFile');
    expect(message).toContain('cachePushSubjects');
  });
});
