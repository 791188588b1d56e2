/**
 * Before realising missing paths from substituters, waits for those the
 * binary cache is importing right now (a developer's `nix copy --to` has
 * been answered, the import runs behind it). The inner realiser then finds
 * them valid and copies nothing; a failed import leaves the path to the
 * substituters like any other missing path.
 */
import type { Logger } from 'pino';
import type { ImportsInFlight } from './imports-in-flight';
import type { PathOutcome, Realiser } from './shared-store';

export class ImportAwaitingRealiser implements Realiser {
  constructor(
    private readonly inner: Realiser,
    private readonly imports: ImportsInFlight,
    private readonly logger: Logger,
  ) {}

  async realise(paths: readonly string[], signal: AbortSignal): Promise<Map<string, PathOutcome>> {
    const pending = paths.filter((p) => this.imports.has(p));
    if (pending.length > 0) {
      const started = Date.now();
      this.logger.info({ paths: pending.length, first: pending[0] }, 'waiting for pushed paths being imported');
      await this.imports.settled(pending, signal);
      this.logger.info(
        { paths: pending.length, ms: Date.now() - started },
        'pushed paths imported; realising what is still missing',
      );
    }
    return this.inner.realise(paths, signal);
  }
}
