/**
 * Coalesces concurrent single-key lookups into batched calls: while one batch
 * runs, new keys queue, and the next batch takes all of them (up to
 * `maxBatch`). One Nix process then answers what a burst of HTTP requests
 * asks, instead of one process per request. A batch that fails rejects every
 * lookup in it.
 */
export class CoalescingBatcher<K, V> {
  private waiting = new Map<K, Array<{ resolve: (v: V | undefined) => void; reject: (e: unknown) => void }>>();
  private running = 0;

  constructor(
    private readonly runBatch: (keys: K[]) => Promise<Map<K, V>>,
    private readonly o: { maxBatch: number; maxConcurrent: number },
  ) {}

  get(key: K): Promise<V | undefined> {
    return new Promise((resolve, reject) => {
      const list = this.waiting.get(key);
      if (list) list.push({ resolve, reject });
      else this.waiting.set(key, [{ resolve, reject }]);
      this.pump();
    });
  }

  private pump(): void {
    while (this.running < this.o.maxConcurrent && this.waiting.size > 0) {
      const batch = new Map<K, Array<{ resolve: (v: V | undefined) => void; reject: (e: unknown) => void }>>();
      for (const [k, v] of this.waiting) {
        if (batch.size >= this.o.maxBatch) break;
        batch.set(k, v);
      }
      for (const k of batch.keys()) this.waiting.delete(k);
      this.running++;
      this.runBatch([...batch.keys()])
        .then(
          (results) => {
            for (const [k, waiters] of batch) for (const w of waiters) w.resolve(results.get(k));
          },
          (err: unknown) => {
            for (const waiters of batch.values()) for (const w of waiters) w.reject(err);
          },
        )
        .finally(() => {
          this.running--;
          this.pump();
        });
    }
  }
}
