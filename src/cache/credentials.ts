/**
 * The token an HTTP request to the binary cache carries: `Authorization:
 * Bearer <token>`, or HTTP Basic, which is what Nix sends from a netrc file
 * (`machine proxy password <token>`; the login is ignored). Pure.
 */

/** Longest Authorization header looked at. */
const MAX_HEADER_LENGTH = 4096;

export function requestToken(header: string | undefined): string | undefined {
  if (header === undefined || header.length > MAX_HEADER_LENGTH) return undefined;
  const bearer = /^Bearer +(\S+) *$/i.exec(header);
  if (bearer) return bearer[1];
  const basic = /^Basic +([A-Za-z0-9+/]+={0,2}) *$/i.exec(header);
  if (!basic) return undefined;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const password = colon === -1 ? decoded : decoded.slice(colon + 1);
  return password === '' ? undefined : password;
}
