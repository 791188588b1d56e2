import type { PathOutcome, Realiser } from '../store/shared-store';
import type { Metrics } from './metrics';

/**
 * Counts the paths a caller got from another caller's in-flight realisation
 * (outcomes with `joined`). Wrap the SingleFlightRealiser, whose outcomes
 * carry that flag. Changes nothing about the calls.
 */
export class MeteredRealiser implements Realiser {
  constructor(
    private readonly inner: Realiser,
    private readonly metrics: Metrics,
  ) {}

  async realise(paths: readonly string[], signal: AbortSignal): Promise<Map<string, PathOutcome>> {
    const outcomes = await this.inner.realise(paths, signal);
    let joined = 0;
    for (const outcome of outcomes.values()) if (outcome.ok && outcome.joined) joined++;
    if (joined > 0) this.metrics.singleFlightJoined(joined);
    return outcomes;
  }
}
