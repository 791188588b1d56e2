/**
 * Realises missing paths from the configured substituters, in order: each
 * source is asked which of the remaining paths it has, those are copied, and
 * what it could not provide goes on to the next source. A copy that fails
 * because of some path (closure incomplete in a binary cache, bad signature)
 * is split in halves until the bad paths are isolated, so one broken path
 * costs about 2·log2(n) extra copies and never fails the others.
 */
import type { Logger } from 'pino';
import { isProxyError, type ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { trimTo } from './nix-error-text';
import { Reasons, type PathOutcome, type PathSource, type Realiser, type SharedStore } from './shared-store';

interface Failure {
  why: string;
  transient: boolean;
}

const MAX_NOTE = 300;

export class SourceOrderRealiser implements Realiser {
  constructor(
    private readonly store: SharedStore,
    private readonly sources: readonly PathSource[],
    private readonly logger: Logger,
  ) {}

  async realise(paths: readonly string[], signal: AbortSignal): Promise<Map<string, PathOutcome>> {
    const outcomes = new Map<string, PathOutcome>();
    const notes = new Map<string, string[]>();
    const transient = new Set<string>();
    const note = (p: string, text: string): void => {
      const list = notes.get(p) ?? [];
      list.push(trimTo(text, MAX_NOTE));
      notes.set(p, list);
    };

    // Paths may have become valid since the caller checked (another caller's
    // copy just finished, or another proxy replica copied them): never copy twice.
    const distinct = [...new Set(paths)];
    const invalid = new Set(await this.store.findInvalid(distinct, signal));
    for (const p of distinct) if (!invalid.has(p)) outcomes.set(p, { ok: true, joined: false });
    let remaining = distinct.filter((p) => invalid.has(p));
    const started = Date.now();
    if (remaining.length > 0)
      this.logger.info({ store: this.store.url, paths: remaining.length }, 'realising missing store paths');

    for (const source of this.sources) {
      if (remaining.length === 0) break;
      let provided: Set<string>;
      try {
        provided = await source.provides(remaining, signal);
      } catch (err) {
        if (!isProxyError(err) || (err.code !== Code.UNAVAILABLE && err.code !== Code.DEADLINE_EXCEEDED)) throw err;
        this.logger.warn({ source: source.url, err: err.message }, 'substituter could not be asked');
        for (const p of remaining) {
          note(p, `${source.url}: could not be asked (${err.message})`);
          transient.add(p);
        }
        continue;
      }
      const wanted = remaining.filter((p) => provided.has(p));
      for (const p of remaining) if (!provided.has(p)) note(p, `${source.url}: does not have it`);
      if (wanted.length === 0) continue;

      const t0 = Date.now();
      const failures = await this.copyIsolating(source, wanted, signal);
      for (const p of wanted) {
        const f = failures.get(p);
        if (!f) {
          outcomes.set(p, { ok: true, joined: false });
          continue;
        }
        note(p, f.why);
        if (f.transient) transient.add(p);
      }
      this.logger.info(
        {
          store: this.store.url,
          source: source.url,
          copied: wanted.length - failures.size,
          failed: failures.size,
          ms: Date.now() - t0,
        },
        'copied from substituter',
      );
      remaining = remaining.filter((p) => !outcomes.has(p));
    }

    if (this.sources.length === 0)
      for (const p of remaining) note(p, 'no substituters are configured (set substituters)');
    for (const p of remaining) {
      outcomes.set(p, { ok: false, transient: transient.has(p), why: (notes.get(p) ?? []).join('; ') });
    }
    if (invalid.size > 0) {
      this.logger.info(
        {
          store: this.store.url,
          realised: invalid.size - remaining.length,
          unavailable: remaining.length,
          ms: Date.now() - started,
        },
        'realisation finished',
      );
    }
    return outcomes;
  }

  /** Copies `paths`; returns the paths that could not be copied and why. Whole-batch problems are thrown. */
  private async copyIsolating(
    source: PathSource,
    paths: readonly string[],
    signal: AbortSignal,
  ): Promise<Map<string, Failure>> {
    try {
      await this.store.copyFrom(source, paths, signal);
      return new Map();
    } catch (err) {
      if (!isProxyError(err)) throw err;
      if (err.reason === Reasons.SOURCE_UNAVAILABLE) return everyPath(paths, err, true);
      if (err.reason !== Reasons.COPY_PATH_FAILED) throw err;
      if (paths.length === 1) return everyPath(paths, err, false);
      const mid = Math.ceil(paths.length / 2);
      const first = await this.copyIsolating(source, paths.slice(0, mid), signal);
      const second = await this.copyIsolating(source, paths.slice(mid), signal);
      return new Map([...first, ...second]);
    }
  }
}

function everyPath(paths: readonly string[], err: ProxyError, transient: boolean): Map<string, Failure> {
  return new Map(paths.map((p) => [p, { why: err.message, transient }]));
}
