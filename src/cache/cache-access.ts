/**
 * Who a binary-cache request comes from and what it may do. The read policy
 * is the gRPC listener's: with authTokensFile every request needs an accepted
 * token (HTTP Basic from a netrc file, or Bearer), without it reads are open.
 * Pushing always needs a credential with the push right: a token whose line
 * grants `push` or `push-unsigned`, or a client certificate whose subject is
 * in cachePushSubjects. Pure apart from the token lookup it is given.
 */
import type { PushRight as TokenRight } from '../server/auth/token-file';
import { requestToken } from './credentials';
import type { PushRight } from './push-importer';

export interface TokenEntries {
  entry(token: string): { name: string; push: TokenRight } | undefined;
}

export interface RequestFacts {
  authorization: string | undefined;
  /** The verified client certificate's subject (CN), when the listener asks for one. */
  certificateSubject: string | undefined;
  /** The peer's address. */
  address: string;
}

export type Access =
  { ok: true; client: string; push: PushRight | undefined } | { ok: false; status: 401 | 403; message: string };

export interface CacheAccessOptions {
  tokens?: TokenEntries;
  /** NAME or NAME=push-unsigned, from cachePushSubjects. */
  pushSubjects: readonly string[];
}

export class CacheAccess {
  private readonly subjects = new Map<string, PushRight>();

  constructor(private readonly o: CacheAccessOptions) {
    for (const s of o.pushSubjects) {
      const eq = s.lastIndexOf('=');
      if (eq > 0 && s.slice(eq + 1) === 'push-unsigned') this.subjects.set(s.slice(0, eq), 'push-unsigned');
      else this.subjects.set(eq > 0 && s.slice(eq + 1) === 'push' ? s.slice(0, eq) : s, 'push');
    }
  }

  identify(req: RequestFacts): Access {
    const token = requestToken(req.authorization);
    if (this.o.tokens) {
      if (token === undefined) {
        return {
          ok: false,
          status: 401,
          message:
            "this binary cache needs a token: put it in a netrc file (machine <proxy host> password <token>) and point nix.conf's netrc-file at it",
        };
      }
      const entry = this.o.tokens.entry(token);
      if (!entry)
        return {
          ok: false,
          status: 401,
          message: "this binary cache does not accept the token sent: it is not in the proxy's authTokensFile",
        };
      const fromToken: PushRight | undefined = entry.push === 'none' ? undefined : entry.push;
      return { ok: true, client: entry.name, push: fromToken };
    }
    if (req.certificateSubject !== undefined) {
      return { ok: true, client: req.certificateSubject, push: this.subjects.get(req.certificateSubject) };
    }
    return { ok: true, client: req.address, push: undefined };
  }
}

export function pushRefusal(client: string, tokensOn: boolean): string {
  return tokensOn
    ? `client '${client}' may read this binary cache but not push to it: its token's line in authTokensFile needs the push right ('NAME:TOKEN push', or 'push,push-unsigned')`
    : "pushing to this binary cache needs a credential with the push right: set authTokensFile with a line 'NAME:TOKEN push', or list the client certificate's subject in cachePushSubjects";
}
