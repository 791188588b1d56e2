import { describe, expect, it } from 'vitest';
import { requestToken } from '../../../src/cache/credentials';

const TOKEN = '4f9c2a7d1e8b3c6f0a5d9e2b7c4f1a8d';

function basic(userPass: string): string {
  return `Basic ${Buffer.from(userPass, 'utf8').toString('base64')}`;
}

describe('requestToken', () => {
  it.each([
    ['Bearer', `Bearer ${TOKEN}`],
    ['bearer in lower case', `bearer ${TOKEN}`],
    ['Bearer with several spaces and a trailing one', `Bearer   ${TOKEN} `],
    ['Basic from a netrc file (login ignored)', basic(`anything:${TOKEN}`)],
    ['Basic with an empty login', basic(`:${TOKEN}`)],
    ['Basic without a colon', basic(TOKEN)],
    ['basic in lower case', basic(`x:${TOKEN}`).replace('Basic', 'basic')],
  ])('takes the token from %s', (_label, header) => {
    expect(requestToken(header)).toBe(TOKEN);
  });

  it('takes everything after the first colon of Basic as the password', () => {
    expect(requestToken(basic(`user:${TOKEN}:more`))).toBe(`${TOKEN}:more`);
  });

  it('decodes a Basic password as UTF-8', () => {
    expect(requestToken(basic('u:pässwörd-1234567890'))).toBe('pässwörd-1234567890');
  });

  it.each([
    ['no header', undefined],
    ['an empty header', ''],
    ['Bearer without a token', 'Bearer '],
    ['Bearer with two words', `Bearer ${TOKEN} extra`],
    ['a scheme without a space', `Bearer${TOKEN}`],
    ['another scheme', `Token ${TOKEN}`],
    ['a bare token', TOKEN],
    ['Basic with an empty password', basic('user:')],
    ['Basic of nothing', 'Basic '],
    ['Basic that is not base64', 'Basic !!notbase64!!'],
    ['a leading space', ` Bearer ${TOKEN}`],
    ['a header of 4097 characters', `Bearer ${'a'.repeat(4097 - 'Bearer '.length)}`],
  ])('finds no token in %s', (_label, header) => {
    expect(requestToken(header)).toBeUndefined();
  });

  it('accepts a header of exactly 4096 characters', () => {
    const long = 'a'.repeat(4096 - 'Bearer '.length);
    expect(requestToken(`Bearer ${long}`)).toBe(long);
  });
});
