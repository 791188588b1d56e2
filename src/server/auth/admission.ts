import type { ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { Code } from '../../reapi/grpc-status';
import { HEALTH_CHECK, HEALTH_WATCH } from '../health-service';
import type { CallStatus, Metadata } from '../../rpc/server-call';
import { bearerToken } from './token-file';

export interface TokenLookup {
  /** The client name for an accepted token; undefined otherwise. */
  lookup(token: string): string | undefined;
}

export interface AdmissionOptions {
  /** Bearer tokens every call must carry (authTokensFile); unset = none required. */
  tokens?: TokenLookup;
  /** The listener requires client certificates (tls.clientCa): name clients by their certificate. */
  clientCertificates: boolean;
  logger: Logger;
}

/**
 * Who is calling, and may they: the one check the router makes on every call
 * before answering or forwarding it. With authTokensFile, a call needs
 * `authorization: Bearer <token>` with an accepted token (the header still
 * goes to the upstream unchanged); the client is the token's name. Otherwise,
 * with client certificates, the client is the certificate's subject (the TLS
 * handshake already refused anyone else); otherwise its IP address. Health
 * checks are always let through (probes carry no credentials).
 *
 * Returns the client's name, or the status to refuse the call with.
 */
export class Admission {
  private readonly certNames = new WeakMap<object, string>();

  constructor(private readonly options: AdmissionOptions) {}

  admit(stream: ServerHttp2Stream, path: string, metadata: Metadata, peer: string): string | CallStatus {
    if (path === HEALTH_CHECK || path === HEALTH_WATCH) return hostOf(peer);
    const { tokens } = this.options;
    if (tokens) {
      const token = bearerToken(metadata.authorization);
      if (token === undefined) return this.refuse(peer, path, MISSING_TOKEN);
      const name = tokens.lookup(token);
      return name ?? this.refuse(peer, path, UNKNOWN_TOKEN);
    }
    if (this.options.clientCertificates) return this.certificateName(stream) ?? this.refuse(peer, path, NO_CERTIFICATE);
    return hostOf(peer);
  }

  /** Read once per connection: every call on it has the same certificate. */
  private certificateName(stream: ServerHttp2Stream): string | undefined {
    const session = stream.session;
    if (!session) return undefined;
    const known = this.certNames.get(session);
    if (known !== undefined) return known;
    const socket = session.socket as TLSSocket;
    if (typeof socket.getPeerCertificate !== 'function' || !socket.authorized) return undefined;
    const name = subjectName(socket.getPeerCertificate()?.subject);
    if (name !== undefined) this.certNames.set(session, name);
    return name;
  }

  private refuse(peer: string, path: string, message: string): CallStatus {
    this.options.logger.info({ peer, method: path, why: message.split(':')[0] }, 'call refused: not authenticated');
    return { code: Code.UNAUTHENTICATED, message };
  }
}

const MISSING_TOKEN =
  'nix-reapi-proxy requires a bearer token: send the header "authorization: Bearer <token>" ' +
  '(Bazel: --remote_header=authorization="Bearer <token>"; Buck2: http_headers = authorization: Bearer <token>)';
const UNKNOWN_TOKEN =
  "nix-reapi-proxy does not accept this bearer token: it is not in the proxy's authTokensFile; check the token or ask the proxy's operator for one";
const NO_CERTIFICATE = 'nix-reapi-proxy requires a client certificate signed by its tls.clientCa';

function hostOf(peer: string): string {
  const colon = peer.lastIndexOf(':');
  return colon > 0 ? peer.slice(0, colon) : peer;
}

/** CN when there is one, otherwise the subject's fields as key=value pairs. */
function subjectName(subject: Partial<Record<string, string | string[]>> | undefined): string | undefined {
  if (!subject) return undefined;
  const cn = subject.CN;
  if (typeof cn === 'string' && cn !== '') return cn;
  const parts = Object.entries(subject)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`);
  return parts.length > 0 ? parts.join(',') : undefined;
}
