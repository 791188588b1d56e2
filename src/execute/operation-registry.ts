import { LRUCache } from 'lru-cache';
import type { ExecutionEntry } from './execution-entry';

export interface RegistryBounds {
  /** Entries kept at most. */
  maxEntries: number;
  /** Bytes of requests and Operations held at most. */
  maxBytes: number;
  /** How long a name is remembered after its last change. */
  ttlMs: number;
}

export const DEFAULT_REGISTRY_BOUNDS: RegistryBounds = {
  maxEntries: 20_000,
  maxBytes: 64 * 1024 * 1024,
  ttlMs: 60 * 60_000,
};

/**
 * Our Operation names -> their entries, bounded in count, bytes and age. An
 * entry pushed out early only costs its client a NOT_FOUND on WaitExecution,
 * after which it calls Execute again; the preparation itself is unaffected
 * (its Execute call holds the entry, not the name).
 */
export class OperationRegistry {
  private readonly cache: LRUCache<string, ExecutionEntry>;

  /** `clock` replaces performance.now() for ages (tests). */
  constructor(bounds: RegistryBounds = DEFAULT_REGISTRY_BOUNDS, clock?: { now(): number }) {
    this.cache = new LRUCache<string, ExecutionEntry>({
      ...(clock ? { perf: clock, ttlResolution: 0 } : {}),
      max: bounds.maxEntries,
      maxSize: bounds.maxBytes,
      sizeCalculation: (entry) => Math.max(1, entry.sizeBytes),
      ttl: bounds.ttlMs,
      ttlAutopurge: false,
    });
  }

  add(entry: ExecutionEntry): void {
    this.cache.set(entry.name, entry);
  }

  get(name: string): ExecutionEntry | undefined {
    return this.cache.get(name);
  }

  /** Re-measures an entry after it grew (a final Operation) and restarts its age. */
  touch(entry: ExecutionEntry): void {
    if (this.cache.peek(entry.name) !== entry) return;
    // lru-cache re-measures only a changed value: take it out and put it back.
    this.cache.delete(entry.name);
    this.cache.set(entry.name, entry);
  }

  delete(entry: ExecutionEntry): void {
    if (this.cache.peek(entry.name) === entry) this.cache.delete(entry.name);
  }

  get size(): number {
    return this.cache.size;
  }
}
