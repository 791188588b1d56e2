import { createHash } from 'node:crypto';

/**
 * The bearer-token file (authTokensFile): one token per line, optionally
 * prefixed with the client's name (`ci-bot:4f9c...`) and optionally followed,
 * after a space, by the token's rights on the binary cache
 * (`dev-alice:4f9c... push`, `ci-bot:77aa... push,push-unsigned`): `push`
 * may upload signed paths, `push-unsigned` also unsigned ones. Every token
 * may call the gRPC services and read the cache. Blank lines and lines
 * starting with '#' are ignored. A token without a name is known by a short
 * hash of it (`token-1a2b3c4d`), never by the token itself, so logs and
 * messages can name clients safely. Only SHA-256 digests of tokens are kept.
 * Pure.
 */

/** What a credential may do on the binary cache beyond reading it. */
export type PushRight = 'none' | 'push' | 'push-unsigned';

export interface TokenEntry {
  /** The client identity: the line's name, or token-<8 hex of its digest>. */
  name: string;
  /** SHA-256 of the token, hex. */
  digest: string;
  push: PushRight;
}

const RIGHTS = new Set(['push', 'push-unsigned']);

/** `push,push-unsigned` -> the strongest right named; a problem for unknown words. */
export function parseRights(text: string): PushRight | { problem: string } {
  const words = text.split(',');
  const unknown = words.find((w) => !RIGHTS.has(w));
  // The word is not quoted: on a mistyped line it may be the token itself.
  if (unknown !== undefined)
    return { problem: 'what follows the space is not a list of rights (known: push, push-unsigned)' };
  return words.includes('push-unsigned') ? 'push-unsigned' : 'push';
}

export interface ParsedTokens {
  entries: TokenEntry[];
  /** One sentence per bad line, with its number; a file with problems is not used. */
  problems: string[];
}

/** Long enough that guessing is hopeless; `openssl rand -hex 16` gives 32 characters. */
export const MIN_TOKEN_LENGTH = 16;
const NAMED = /^([A-Za-z0-9][A-Za-z0-9._@+-]{0,63}):(\S+)$/;
const BARE = /^\S+$/;

export function tokenDigest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export function parseTokenFile(text: string): ParsedTokens {
  const entries: TokenEntry[] = [];
  const problems: string[] = [];
  const seen = new Map<string, number>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const lineNo = i + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const [line, rightsText, ...extra] = trimmed.split(/[ \t]+/) as [string, ...string[]];
    if (extra.length > 0) {
      problems.push(
        `line ${lineNo}: expected TOKEN or NAME:TOKEN, then optionally one space and RIGHTS (push or push,push-unsigned)`,
      );
      return;
    }
    let push: PushRight = 'none';
    if (rightsText !== undefined) {
      const rights = parseRights(rightsText);
      if (typeof rights !== 'string') {
        problems.push(
          `line ${lineNo}: expected TOKEN or NAME:TOKEN, then optionally a space and rights; ${rights.problem}`,
        );
        return;
      }
      push = rights;
    }
    let name: string | undefined;
    let token: string;
    const named = NAMED.exec(line);
    if (named) {
      name = named[1]!;
      token = named[2]!;
    } else if (BARE.test(line)) {
      token = line;
    } else {
      problems.push(`line ${lineNo}: expected TOKEN or NAME:TOKEN`);
      return;
    }
    if (token.length < MIN_TOKEN_LENGTH) {
      problems.push(
        `line ${lineNo}: the token is shorter than ${MIN_TOKEN_LENGTH} characters (use e.g. \`openssl rand -hex 16\`)`,
      );
      return;
    }
    const digest = tokenDigest(token);
    const earlier = seen.get(digest);
    if (earlier !== undefined) {
      problems.push(`line ${lineNo}: the same token as line ${earlier}`);
      return;
    }
    seen.set(digest, lineNo);
    entries.push({ name: name ?? `token-${digest.slice(0, 8)}`, digest, push });
  });
  return { entries, problems };
}

/**
 * The token of an `authorization: Bearer <token>` header; undefined when the
 * header is absent, repeated, or not a bearer credential.
 */
export function bearerToken(value: string | string[] | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^Bearer +(\S+) *$/i.exec(value);
  return m ? m[1] : undefined;
}
