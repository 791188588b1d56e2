/**
 * The error a user sees when store paths cannot be made valid on the shared
 * store: every path named with what each source said, within bounds that
 * keep the status small enough for a gRPC trailer. Pure.
 */
import { ProxyError, type Violation } from '../errors';
import { Code } from '../reapi/grpc-status';
import { NIX_STORE_PATH_VIOLATION } from './closure-ensurer';
import { trimTo } from './nix-error-text';
import { Reasons } from './shared-store';

export interface PathFailure {
  path: string;
  why: string;
  transient: boolean;
}

const PATHS_IN_MESSAGE = 10;
const MAX_VIOLATIONS = 100;
const MAX_WHY = 300;

export function unavailablePathsError(storeUrl: string, failures: readonly PathFailure[]): ProxyError {
  const retryable = failures.some((f) => f.transient);
  const listed = failures
    .slice(0, PATHS_IN_MESSAGE)
    .map((f) => `${f.path} (${trimTo(f.why, MAX_WHY)})`)
    .join('; ');
  const more = failures.length > PATHS_IN_MESSAGE ? `; and ${failures.length - PATHS_IN_MESSAGE} more` : '';
  const n = failures.length;
  const head = `${n} Nix store path${n === 1 ? '' : 's'} could not be made valid on the shared store ${storeUrl}: ${listed}${more}.`;
  const advice = retryable
    ? ' Some substituters could not be reached; retry once they are back, or check the substituters setting.'
    : ' Build the paths and push them to one of the substituters (or add a substituter that has them), then retry.';
  const violations: Violation[] = failures.slice(0, MAX_VIOLATIONS).map((f) => ({
    type: NIX_STORE_PATH_VIOLATION,
    subject: f.path,
    description: trimTo(f.why, MAX_WHY),
  }));
  return retryable
    ? new ProxyError(Code.UNAVAILABLE, Reasons.SOURCES_UNAVAILABLE, head + advice, { violations })
    : new ProxyError(Code.FAILED_PRECONDITION, Reasons.PATHS_UNAVAILABLE, head + advice, { violations });
}
