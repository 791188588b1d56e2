import type { ProxyError, Violation } from '../errors';
import { Code } from '../reapi/grpc-status';
import { STORE_PATH_RE } from '../nix/store-path';
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
/** Paths spelt out in the suggested `nix copy` command (a shell line stays usable). */
const PATHS_IN_COMMAND = 50;

/** Store paths are safe in single quotes (STORE_PATH_RE has no quote); the URL was checked by checkCachePublicUrl. */
function pushCommand(pushUrl: string, paths: readonly string[]): string {
  const listed = paths.slice(0, PATHS_IN_COMMAND).join(' ');
  const more =
    paths.length > PATHS_IN_COMMAND ? ` (and the other ${paths.length - PATHS_IN_COMMAND} paths listed)` : '';
  return `nix copy --to '${pushUrl}' ${listed}${more}`;
}

export function missingPathsStatus(err: ProxyError, references: References, pushUrl?: string): RpcStatus {
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
  const paths = given.map((v) => v.subject).filter((p) => STORE_PATH_RE.test(p));
  const fix =
    pushUrl !== undefined && paths.length > 0
      ? 'To fix: push them from the machine that built them (a token with the push right in your netrc file; ' +
        `see the proxy's client setup), then build again:\n  ${pushCommand(pushUrl, paths)}\n` +
        "Or make them available from one of the proxy's substituters, or change the toolchain so the action stops referencing them."
      : 'To fix: make the paths available from one of the ' +
        "proxy's substituters (e.g. `nix copy --to <your binary cache> <path>` from a machine that has them), " +
        'or change the toolchain so the action stops referencing them; then build again.';
  const message =
    `nix-reapi-proxy could not put ${subject} this action needs into the executors' shared Nix store:\n` +
    `${lines.join('\n')}\n` +
    `The action did not run and nothing was cached. ${fix}`;
  return { code: Code.FAILED_PRECONDITION, message, violations };
}
