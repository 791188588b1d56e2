import type { ProxyError, Violation } from '../errors';
import { Code } from '../reapi/grpc-status';
import { NIX_STORE_PATH_VIOLATION } from '../store/closure-ensurer';
import type { References } from './action-references';
import type { RpcStatus } from './operation-messages';

/** Paths spelt out in the message; Bazel prints every violation as well. */
const LISTED_IN_MESSAGE = 10;
/** Keeps the Operation far below any client's message limit. */
const MAX_VIOLATIONS = 500;
/** Where a path was referenced quotes client-chosen names (environment variables, files) of any length. */
const MAX_WHERE_CHARS = 200;

/** A where-string cut to MAX_WHERE_CHARS, control characters shown escaped so each path stays on its line. */
function shown(where: string | undefined): string | undefined {
  if (where === undefined) return undefined;
  const cut = where.length > MAX_WHERE_CHARS ? `${where.slice(0, MAX_WHERE_CHARS)}...` : where;
  return cut.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/**
 * The ExecuteResponse.status for store paths no source can provide: the
 * message is what Bazel prints in its console, so it names each path, where
 * the action referenced it, why it could not be had and what to do. Pure.
 */
export function missingPathsStatus(err: ProxyError, references: References): RpcStatus {
  const given = err.violations.filter((v) => v.type === NIX_STORE_PATH_VIOLATION);
  const violations: Violation[] = given.slice(0, MAX_VIOLATIONS).map((v) => {
    const where = shown(references.get(v.subject));
    return {
      type: NIX_STORE_PATH_VIOLATION,
      subject: v.subject,
      description: where === undefined ? v.description : `${v.description} (referenced by ${where})`,
    };
  });
  const count = given.length;
  if (count === 0) return { code: Code.FAILED_PRECONDITION, message: err.message, violations: [] };
  const lines = given.slice(0, LISTED_IN_MESSAGE).map((v) => {
    const where = shown(references.get(v.subject));
    return `  ${v.subject}${where === undefined ? '' : ` (referenced by ${where})`}: ${v.description}`;
  });
  if (count > LISTED_IN_MESSAGE) lines.push(`  ...and ${count - LISTED_IN_MESSAGE} more`);
  const subject = count === 1 ? 'a Nix store path' : `${count} Nix store paths`;
  const message =
    `nix-reapi-proxy could not put ${subject} this action needs into the executors' shared Nix store:\n` +
    `${lines.join('\n')}\n` +
    'The action did not run and nothing was cached. To fix: make the paths available from one of the ' +
    "proxy's substituters (e.g. `nix copy --to <your binary cache> <path>` from a machine that has them), " +
    'or change the toolchain so the action stops referencing them; then build again.';
  return { code: Code.FAILED_PRECONDITION, message, violations };
}
