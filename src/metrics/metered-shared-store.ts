import type { PathSource, SharedStore } from '../store/shared-store';
import type { Metrics } from './metrics';

/**
 * Reports each validity query and each copy into the shared store. Wrap the
 * backend itself (NixCliSharedStore, inside the serialised and retried
 * writes), so one call here is one Nix process: a retried copy then counts as
 * one failed and one successful realisation. Changes nothing about the calls.
 * `bytes` is reported as 0: the backend does not tell how much it copied.
 */
export class MeteredSharedStore implements SharedStore {
  constructor(
    private readonly inner: SharedStore,
    private readonly metrics: Metrics,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get url(): string {
    return this.inner.url;
  }

  async findInvalid(paths: readonly string[], signal: AbortSignal): Promise<string[]> {
    const started = this.now();
    try {
      const invalid = await this.inner.findInvalid(paths, signal);
      this.metrics.validityChecked({
        paths: paths.length,
        invalid: invalid.length,
        durationMs: this.now() - started,
        ok: true,
      });
      return invalid;
    } catch (err) {
      this.metrics.validityChecked({ paths: paths.length, invalid: 0, durationMs: this.now() - started, ok: false });
      throw err;
    }
  }

  async copyFrom(source: PathSource, paths: readonly string[], signal: AbortSignal): Promise<void> {
    const started = this.now();
    this.metrics.realisationStarted();
    try {
      await this.inner.copyFrom(source, paths, signal);
      this.metrics.realisationFinished({
        ok: true,
        durationMs: this.now() - started,
        paths: new Set(paths).size,
        bytes: 0,
      });
    } catch (err) {
      this.metrics.realisationFinished({ ok: false, durationMs: this.now() - started, paths: 0, bytes: 0 });
      throw err;
    }
  }
}
