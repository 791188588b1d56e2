/**
 * The undecorated ClosureEnsurer: ask the shared store which paths are
 * invalid, have the realiser make them valid, and turn paths no source could
 * provide into one error naming each. Caching, visibility and single-flight
 * are decorators around this and around the realiser.
 */
import type { Logger } from 'pino';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { STORE_PATH_RE } from '../nix/store-path';
import type { ClosureEnsurer, EnsureReport } from './closure-ensurer';
import { Reasons, type Realiser, type SharedStore } from './shared-store';
import { unavailablePathsError, type PathFailure } from './unavailable-paths-error';

export class CheckingEnsurer implements ClosureEnsurer {
  constructor(
    private readonly store: SharedStore,
    private readonly realiser: Realiser,
    private readonly logger: Logger,
  ) {}

  async ensure(paths: readonly string[], signal: AbortSignal): Promise<EnsureReport> {
    const distinct = [...new Set(paths)];
    const malformed = distinct.filter((p) => !STORE_PATH_RE.test(p));
    if (malformed.length > 0) {
      throw new ProxyError(
        Code.INVALID_ARGUMENT,
        Reasons.INVALID_STORE_PATH,
        `not Nix store paths: ${malformed
          .slice(0, 5)
          .map((p) => JSON.stringify(p.slice(0, 200)))
          .join(', ')}${malformed.length > 5 ? ` and ${malformed.length - 5} more` : ''}`,
      );
    }
    const report: EnsureReport = {
      requested: distinct.length,
      cachedValid: 0,
      missing: [],
      realised: [],
      joined: 0,
      checkMs: 0,
      realiseMs: 0,
      visibleWaitMs: 0,
    };
    if (distinct.length === 0) return report;

    const t0 = Date.now();
    report.missing = await this.store.findInvalid(distinct, signal);
    report.checkMs = Date.now() - t0;
    if (report.missing.length === 0) return report;

    const t1 = Date.now();
    const outcomes = await this.realiser.realise(report.missing, signal);
    report.realiseMs = Date.now() - t1;
    const failures: PathFailure[] = [];
    for (const path of report.missing) {
      const outcome = outcomes.get(path);
      if (outcome?.ok) {
        report.realised.push(path);
        if (outcome.joined) report.joined++;
      } else {
        failures.push({ path, why: outcome?.why ?? 'no answer', transient: outcome?.transient ?? true });
      }
    }
    if (failures.length > 0) {
      this.logger.warn(
        { store: this.store.url, unavailable: failures.length, realised: report.realised.length },
        'store paths unavailable',
      );
      throw unavailablePathsError(this.store.url, failures);
    }
    return report;
  }
}
