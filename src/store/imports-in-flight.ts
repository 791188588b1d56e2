/**
 * Store paths being imported into the shared store by the binary cache right
 * now (pushed, accepted, not yet valid). The binary cache's importer writes
 * it; the Execute path reads it, so an action that needs a path a developer
 * has just pushed waits for that import instead of failing it as missing.
 * Each entry settles when the import does, resolving or rejecting.
 */
import { untilAborted } from '../util/abortable';

export class ImportsInFlight {
  private readonly imports = new Map<string, Promise<void>>();

  get(path: string): Promise<void> | undefined {
    return this.imports.get(path);
  }

  has(path: string): boolean {
    return this.imports.has(path);
  }

  get size(): number {
    return this.imports.size;
  }

  /** Registers `done` for `path` until it settles. */
  track(path: string, done: Promise<void>): void {
    this.imports.set(path, done);
    const forget = (): void => {
      if (this.imports.get(path) === done) this.imports.delete(path);
    };
    done.then(forget, forget);
  }

  /**
   * Waits until none of `paths` is being imported (failures included: the
   * caller looks at the store afterwards); rejects CANCELLED when `signal`
   * aborts. Resolves with how many of them it waited for.
   */
  async settled(paths: readonly string[], signal: AbortSignal): Promise<number> {
    const waits = [...new Set(paths)]
      .map((p) => this.imports.get(p))
      .filter((w): w is Promise<void> => w !== undefined);
    if (waits.length === 0) return 0;
    const all = Promise.all(waits.map((w) => w.catch(() => undefined)));
    await untilAborted(all, signal, 'waiting for pushed paths to be imported');
    return waits.length;
  }
}
