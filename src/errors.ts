import { Code, type CodeValue } from './reapi/grpc-status';

/** One entry of a google.rpc.PreconditionFailure detail. */
export interface Violation {
  type: string;
  subject: string;
  description: string;
}

/**
 * The one error type thrown inside the proxy. `code` is the gRPC status the
 * client will see, `reason` a stable machine-readable identifier (for logs and
 * metrics), `message` a sentence for a person: what failed, why, what to do.
 * It is converted to a gRPC status once, at the edge.
 */
export class ProxyError extends Error {
  readonly code: CodeValue;
  readonly reason: string;
  readonly violations: readonly Violation[];

  constructor(
    code: CodeValue,
    reason: string,
    message: string,
    options: { cause?: unknown; violations?: readonly Violation[] } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProxyError';
    this.code = code;
    this.reason = reason;
    this.violations = options.violations ?? [];
  }
}

export function isProxyError(err: unknown): err is ProxyError {
  return err instanceof ProxyError;
}

/** Anything not already a ProxyError becomes INTERNAL with a generic message; the cause is kept for the log. */
export function toProxyError(err: unknown, context: string): ProxyError {
  if (err instanceof ProxyError) return err;
  if (err instanceof Error && err.name === 'AbortError') {
    return new ProxyError(Code.CANCELLED, 'CANCELLED', `${context}: cancelled`, { cause: err });
  }
  return new ProxyError(Code.INTERNAL, 'INTERNAL', `${context}: internal error in nix-reapi-proxy (see its log)`, {
    cause: err,
  });
}
