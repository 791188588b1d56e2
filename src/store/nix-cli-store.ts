/**
 * The shared store and its sources, driven through the Nix 2.8 command line.
 *
 * Validity: `nix-store --store S --check-validity --print-invalid P...` prints
 * only the invalid paths, exits 0 and never asks a substituter.
 *
 * Copies: `nix copy --from SOURCE --to SHARED P...` rather than
 * `nix-store --realise` with `--option substituters`. The copy runs in the
 * proxy and streams from any store to any store, so it works for every
 * combination (a file:// cache local to the proxy into an ssh-ng shared store;
 * `--realise` would run on the far side with that side's substituters). It
 * also copies nothing when the source lacks part of a closure, where
 * `--realise` leaves a partial copy. Its weakness, failures when two copies
 * write overlapping paths into one store, is handled by the
 * serialised-writes and retrying-writes decorators.
 */
import type { Logger } from 'pino';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { STORE_PATH_RE } from '../nix/store-path';
import { describeInvocation, runOverPaths, type NixOutcome, type NixRunner } from './nix-command';
import { classifyCopyFailure, nixErrorSummary } from './nix-error-text';
import { checkLocalDir, pathExists, type ExistsProbe } from './local-dir-check';
import { Reasons, type PathSource, type SharedStore } from './shared-store';
import type { StoreUrl } from './store-url';

function assertStorePaths(paths: readonly string[]): void {
  const bad = paths.find((p) => !STORE_PATH_RE.test(p));
  if (bad !== undefined) {
    throw new ProxyError(
      Code.INVALID_ARGUMENT,
      Reasons.INVALID_STORE_PATH,
      `not a store path: ${JSON.stringify(bad.slice(0, 300))}`,
    );
  }
}

function failed(outcomes: NixOutcome[]): NixOutcome | undefined {
  return outcomes.find((o) => o.exitCode !== 0);
}

function invalidFrom(outcomes: NixOutcome[], asked: readonly string[]): string[] {
  const askedSet = new Set(asked);
  const invalid = new Set<string>();
  for (const o of outcomes) {
    for (const line of o.stdout.split('\n')) {
      const p = line.trim();
      if (askedSet.has(p)) invalid.add(p);
    }
  }
  return [...invalid];
}

function storeHint(store: StoreUrl): string {
  switch (store.kind) {
    case 'daemon':
      return 'Check that nix-daemon is running and that the proxy user may connect to its socket.';
    case 'ssh':
    case 'ssh-ng':
      return `Check that the proxy user can ssh to ${store.host} without a prompt (keys, known_hosts; a port goes in ~/.ssh/config or NIX_SSHOPTS) and that Nix is installed there.`;
    case 'local':
      return 'Check that the proxy user may write the store, or use daemon.';
    case 'chroot':
      return 'Check the directory holds a Nix store the proxy user may write.';
    default:
      return 'Check the URL and that the store is up.';
  }
}

/** Copy progress: Nix prints "copying path '...'" per path; log a summary now and then. */
function progressLogger(logger: Logger, intervalMs: number, fields: Record<string, unknown>) {
  let copied = 0;
  let last = '';
  const started = Date.now();
  const timer = setInterval(() => {
    logger.info({ ...fields, copied, elapsedMs: Date.now() - started, last }, 'copy into shared store still running');
  }, intervalMs);
  timer.unref();
  return {
    onLine(line: string): void {
      if (line.startsWith('copying path')) copied++;
      last = line.slice(0, 300);
    },
    stop(): void {
      clearInterval(timer);
    },
  };
}

export interface NixCliSharedStoreOptions {
  store: StoreUrl;
  runner: NixRunner;
  requireSigs: boolean;
  trustedPublicKeys: readonly string[];
  logger: Logger;
  progressIntervalMs: number;
  exists?: ExistsProbe;
}

export class NixCliSharedStore implements SharedStore {
  readonly url: string;
  private readonly exists: ExistsProbe;

  constructor(private readonly o: NixCliSharedStoreOptions) {
    this.url = o.store.url;
    this.exists = o.exists ?? pathExists;
  }

  async findInvalid(paths: readonly string[], signal: AbortSignal): Promise<string[]> {
    if (paths.length === 0) return [];
    assertStorePaths(paths);
    await checkLocalDir(this.o.store, 'shared store', Reasons.SHARED_STORE_UNAVAILABLE, this.exists);
    return invalidIn(
      this.o.runner,
      this.url,
      paths,
      signal,
      (why) =>
        new ProxyError(
          Code.UNAVAILABLE,
          Reasons.SHARED_STORE_UNAVAILABLE,
          `shared Nix store ${this.url} cannot be reached or read: ${why}. ${storeHint(this.o.store)}`,
        ),
    );
  }

  async copyFrom(source: PathSource, paths: readonly string[], signal: AbortSignal): Promise<void> {
    if (paths.length === 0) return;
    assertStorePaths(paths);
    await checkLocalDir(this.o.store, 'shared store', Reasons.SHARED_STORE_UNAVAILABLE, this.exists);
    const sigArgs =
      !this.o.requireSigs || source.copyMode?.signaturesChecked
        ? ['--no-check-sigs']
        : this.o.trustedPublicKeys.length > 0
          ? ['--option', 'trusted-public-keys', this.o.trustedPublicKeys.join(' ')]
          : [];
    // A `.drv` goes in its own invocation with `--derivation` (the file itself); for an output path that flag
    // would mean "its deriver", so other paths are copied without it.
    const drvs = paths.filter((p) => p.endsWith('.drv'));
    const others = paths.filter((p) => !p.endsWith('.drv'));
    const listed = source.copyMode?.onlyListedPaths ? ['--no-recursive'] : [];
    const baseArgs = ['copy', '--from', source.url, '--to', this.url, ...NEVER_BUILD, ...sigArgs, ...listed];
    const groups = [
      { fixedArgs: baseArgs, paths: others },
      { fixedArgs: [...baseArgs, '--derivation'], paths: drvs },
    ].filter((g) => g.paths.length > 0);
    const progress = progressLogger(this.o.logger, this.o.progressIntervalMs, {
      store: this.url,
      source: source.url,
      paths: paths.length,
    });
    let outcomes: NixOutcome[] = [];
    let fixedArgs = baseArgs;
    try {
      for (const g of groups) {
        fixedArgs = g.fixedArgs;
        outcomes = await runOverPaths(
          this.o.runner,
          { program: 'nix', fixedArgs, onStderrLine: (l) => progress.onLine(l) },
          g.paths,
          signal,
        );
        if (failed(outcomes)) break;
      }
    } finally {
      progress.stop();
    }
    const bad = failed(outcomes);
    if (!bad) return;
    const summary = nixErrorSummary(bad.stderr) || `exit ${bad.exitCode ?? bad.signal}`;
    const what = describeInvocation({ program: 'nix', args: [...fixedArgs, ...paths] });
    const kind =
      bad.exitCode === null
        ? 'transient'
        : classifyCopyFailure(bad.stderr, { source: source.url, destination: this.url });
    switch (kind) {
      case 'path':
        throw new ProxyError(
          Code.FAILED_PRECONDITION,
          Reasons.COPY_PATH_FAILED,
          `${source.url}: has it, but copying it into ${this.url} failed: ${summary}`,
        );
      case 'source':
        throw new ProxyError(
          Code.UNAVAILABLE,
          Reasons.SOURCE_UNAVAILABLE,
          `substituter ${source.url} cannot be reached: ${summary}`,
        );
      case 'destination':
        throw new ProxyError(
          Code.UNAVAILABLE,
          Reasons.SHARED_STORE_UNAVAILABLE,
          `shared Nix store ${this.url} cannot be written: ${summary}. ${storeHint(this.o.store)}`,
        );
      default:
        throw new ProxyError(Code.UNAVAILABLE, Reasons.COPY_FAILED, `${what} failed: ${summary}`);
    }
  }
}

/**
 * A copy must never build. Given a `.drv` path, `nix copy` builds the derivation and copies its outputs (a
 * fixed-output one downloads from whatever URL it names), so a client naming a `.drv` would run a builder
 * on this host. A `.drv` is therefore copied with `--derivation` (the file itself; its closure is files:
 * sources and other `.drv`s), and `--max-jobs 0` with no remote builders refuses any build that would still
 * be attempted; that refusal is a failure of the path, not retried.
 */
export const NEVER_BUILD: readonly string[] = ['--max-jobs', '0', '--builders', ''];

export interface NixCliPathSourceOptions {
  store: StoreUrl;
  runner: NixRunner;
  exists?: ExistsProbe;
}

/**
 * One batched `nix-store --check-validity --print-invalid` against `storeUrl`
 * (it never asks a substituter); returns the invalid paths. A Nix failure is
 * turned into the caller's error, given Nix's own summary of why.
 */
async function invalidIn(
  runner: NixRunner,
  storeUrl: string,
  paths: readonly string[],
  signal: AbortSignal,
  unreachable: (why: string) => ProxyError,
): Promise<string[]> {
  const outcomes = await runOverPaths(
    runner,
    { program: 'nix-store', fixedArgs: ['--store', storeUrl, '--check-validity', '--print-invalid'] },
    paths,
    signal,
  );
  const bad = failed(outcomes);
  if (bad) throw unreachable(nixErrorSummary(bad.stderr) || `exit ${bad.exitCode ?? bad.signal}`);
  return invalidFrom(outcomes, paths);
}

/** A substituter asked by a validity check against it (for binary caches: narinfo lookups). */
export class NixCliPathSource implements PathSource {
  readonly url: string;
  private readonly exists: ExistsProbe;

  constructor(private readonly o: NixCliPathSourceOptions) {
    this.url = o.store.url;
    this.exists = o.exists ?? pathExists;
  }

  async provides(paths: readonly string[], signal: AbortSignal): Promise<Set<string>> {
    if (paths.length === 0) return new Set();
    assertStorePaths(paths);
    await checkLocalDir(this.o.store, 'substituter', Reasons.SOURCE_UNAVAILABLE, this.exists);
    const invalid = new Set(
      await invalidIn(
        this.o.runner,
        this.url,
        paths,
        signal,
        (why) =>
          new ProxyError(
            Code.UNAVAILABLE,
            Reasons.SOURCE_UNAVAILABLE,
            `substituter ${this.url} cannot be asked: ${why}`,
          ),
      ),
    );
    return new Set(paths.filter((p) => !invalid.has(p)));
  }
}
