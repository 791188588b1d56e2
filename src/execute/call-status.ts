import type { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import type { CallStatus } from '../rpc/server-call';
import { encodeStatus } from './operation-messages';

/**
 * grpc-message and grpc-status-details-bin travel in trailers, and clients
 * bound those (Netty, under Bazel, to 8 KiB in all): keep both well inside.
 * Dropping violations is safe: a client that sees some MISSING blobs
 * re-uploads everything missing.
 */
const MAX_MESSAGE_CHARS = 2000;
const MAX_DETAILS_BYTES = 3000;

/**
 * The gRPC status an Execute or WaitExecution call ends with for a ProxyError:
 * code and message as they are, and the violations (e.g. MISSING blobs) as an
 * encoded google.rpc.Status in grpc-status-details-bin. INTERNAL errors keep
 * their generic message; the cause goes to the log, never to the client. Pure.
 */
export function callStatusFor(err: ProxyError): CallStatus {
  const message =
    err.message.length > MAX_MESSAGE_CHARS ? `${err.message.slice(0, MAX_MESSAGE_CHARS)}...` : err.message;
  if (err.code === Code.OK) return { code: Code.INTERNAL, message: 'internal error in nix-reapi-proxy (see its log)' };
  const status: CallStatus = { code: err.code, message };
  if (err.violations.length > 0) {
    let violations = err.violations;
    let details = encodeStatus({ code: err.code, message: '', violations });
    while (details.length > MAX_DETAILS_BYTES && violations.length > 1) {
      violations = violations.slice(0, Math.max(1, Math.floor(violations.length / 2)));
      details = encodeStatus({ code: err.code, message: '', violations });
    }
    // The details repeat the message; a short form keeps the trailers small.
    const short = message.length > 500 ? `${message.slice(0, 500)}...` : message;
    status.details = encodeStatus({ code: err.code, message: short, violations });
  }
  return status;
}
