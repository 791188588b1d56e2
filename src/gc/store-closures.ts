/**
 * What a prune asks Nix about the shared store: which root paths are valid,
 * the NAR sizes and references of their closures, and (optionally) running
 * the store's garbage collector. Everything goes through the store side's
 * NixRunner, so it has the same timeout, abort and bounded-output guarantees.
 *
 * Validity first (`nix-store --check-validity --print-invalid`, which never
 * fails on a missing path), then `nix path-info --json -r` on the valid ones
 * only: one invalid argument makes path-info fail the whole batch. A GC
 * running between the two can still invalidate a path; the query is then
 * repeated once from the validity check.
 */
import type { Logger } from 'pino';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { checkLocalDir, pathExists, type ExistsProbe } from '../store/local-dir-check';
import { chunkArgs } from '../store/argv-chunks';
import { runOverPaths, type NixOutcome, type NixRunner } from '../store/nix-command';
import { nixErrorSummary } from '../store/nix-error-text';
import { Reasons } from '../store/shared-store';
import type { StoreUrl } from '../store/store-url';
import { isDeletingLine, parseGcSummary, type GcSummary } from './gc-output';
import { parsePathInfoJson, type PathInfoMap } from './path-info-json';

/** Roots per `nix path-info -r` process: keeps each JSON answer to a few MiB. */
const PATH_INFO_CHUNK = 500;

export interface StoreClosures {
  valid: Set<string>;
  info: PathInfoMap;
}

export interface StoreQueryContext {
  store: StoreUrl;
  runner: NixRunner;
  logger: Logger;
  exists?: ExistsProbe;
}

function storeError(store: StoreUrl, what: string, outcome: NixOutcome): ProxyError {
  const why = nixErrorSummary(outcome.stderr) || `exit ${outcome.exitCode ?? outcome.signal}`;
  return new ProxyError(
    Code.UNAVAILABLE,
    Reasons.SHARED_STORE_UNAVAILABLE,
    `${what} on shared Nix store ${store.url} failed: ${why}. Check that the store is reachable and the proxy user may read it.`,
  );
}

async function validSubset(
  ctx: StoreQueryContext,
  paths: readonly string[],
  signal: AbortSignal,
): Promise<Set<string>> {
  if (paths.length === 0) return new Set();
  const outcomes = await runOverPaths(
    ctx.runner,
    { program: 'nix-store', fixedArgs: ['--store', ctx.store.url, '--check-validity', '--print-invalid'] },
    paths,
    signal,
  );
  const bad = outcomes.find((o) => o.exitCode !== 0);
  if (bad) throw storeError(ctx.store, 'checking which rooted paths are valid', bad);
  const invalid = new Set(outcomes.flatMap((o) => o.stdout.split('\n').map((l) => l.trim())));
  return new Set(paths.filter((p) => !invalid.has(p)));
}

async function pathInfo(
  ctx: StoreQueryContext,
  roots: readonly string[],
  signal: AbortSignal,
): Promise<PathInfoMap | NixOutcome> {
  const info: PathInfoMap = new Map();
  for (const chunk of chunkArgs(roots, 128 * 1024, PATH_INFO_CHUNK)) {
    const outcome = await ctx.runner.run(
      { program: 'nix', args: ['path-info', '--store', ctx.store.url, '--json', '--recursive', ...chunk] },
      signal,
    );
    if (outcome.exitCode !== 0) return outcome;
    try {
      parsePathInfoJson(outcome.stdout, info);
    } catch (err) {
      throw new ProxyError(
        Code.INTERNAL,
        Reasons.SHARED_STORE_UNAVAILABLE,
        `nix path-info --json on ${ctx.store.url} printed something that is not its JSON: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  return info;
}

/** Which of `roots` are valid on the store, and the path info of their closures. */
export async function queryRootClosures(
  ctx: StoreQueryContext,
  roots: readonly string[],
  signal: AbortSignal,
): Promise<StoreClosures> {
  await checkLocalDir(ctx.store, 'shared store', Reasons.SHARED_STORE_UNAVAILABLE, ctx.exists ?? pathExists);
  for (let attempt = 1; ; attempt++) {
    const started = Date.now();
    const valid = await validSubset(ctx, roots, signal);
    const info = await pathInfo(ctx, [...valid], signal);
    if (info instanceof Map) {
      ctx.logger.info(
        {
          store: ctx.store.url,
          roots: roots.length,
          valid: valid.size,
          closurePaths: info.size,
          ms: Date.now() - started,
        },
        'read sizes of rooted closures',
      );
      return { valid, info };
    }
    // A path became invalid between the two queries (a GC ran): ask again once.
    if (attempt >= 2) throw storeError(ctx.store, 'reading sizes of rooted closures (nix path-info)', info);
    ctx.logger.info(
      { store: ctx.store.url, why: nixErrorSummary(info.stderr) },
      'rooted path vanished while reading sizes; asking again',
    );
  }
}

/** Runs the store's garbage collector; logs progress while it deletes. */
export async function collectGarbage(
  ctx: StoreQueryContext,
  signal: AbortSignal,
  progressIntervalMs: number,
): Promise<GcSummary> {
  await checkLocalDir(ctx.store, 'shared store', Reasons.SHARED_STORE_UNAVAILABLE, ctx.exists ?? pathExists);
  let deleted = 0;
  const started = Date.now();
  const timer = setInterval(() => {
    ctx.logger.info(
      { store: ctx.store.url, deleted, elapsedMs: Date.now() - started },
      'garbage collection still running',
    );
  }, progressIntervalMs);
  timer.unref();
  let outcome: NixOutcome;
  try {
    outcome = await ctx.runner.run(
      {
        program: 'nix-store',
        args: ['--store', ctx.store.url, '--gc'],
        onStderrLine: (line) => {
          if (isDeletingLine(line)) deleted++;
        },
      },
      signal,
    );
  } finally {
    clearInterval(timer);
  }
  if (outcome.exitCode !== 0) throw storeError(ctx.store, 'garbage collection (nix-store --gc)', outcome);
  const summary = parseGcSummary(outcome.stdout) ?? { pathsDeleted: deleted, bytesFreed: 0 };
  ctx.logger.info({ store: ctx.store.url, ...summary, ms: Date.now() - started }, 'garbage collection finished');
  return summary;
}
