/**
 * Which store path a narinfo request means. A binary cache is asked by hash
 * part (`/<hash>.narinfo`) but Nix's command line only takes whole paths, so
 * the proxy keeps a map from hash part to path, fed by every push it imports
 * and, on a miss, by listing directories whose entries are store path base
 * names: the proxy's GC roots directory (every path the proxy ensured or
 * imported, across restarts and replicas) and, for a store on this host, the
 * store directory itself. A hash it cannot place is answered 404, which only
 * costs the client an upload of a path the store may already have (the push
 * then finds it valid and imports nothing).
 */
import { readdir } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import { HASH_LENGTH, STORE_PATH_RE, STORE_PREFIX } from '../nix/store-path';

export interface HashIndexOptions {
  /** Directories whose entries are named `<hash>-<name>`. */
  dirs: readonly string[];
  maxEntries: number;
  /** A listing is reused this long before a miss lists again. */
  listTtlMs: number;
  logger: Logger;
  now?: () => number;
}

export class HashIndex {
  private readonly paths: LRUCache<string, string>;
  private listedAt = -Infinity;
  private listing: Promise<void> | undefined;
  private readonly now: () => number;

  constructor(private readonly o: HashIndexOptions) {
    this.paths = new LRUCache({ max: o.maxEntries });
    this.now = o.now ?? Date.now;
  }

  add(path: string): void {
    if (STORE_PATH_RE.test(path))
      this.paths.set(path.slice(STORE_PREFIX.length, STORE_PREFIX.length + HASH_LENGTH), path);
  }

  async lookup(hash: string): Promise<string | undefined> {
    const known = this.paths.get(hash);
    if (known !== undefined) return known;
    if (this.now() - this.listedAt >= this.o.listTtlMs) await this.list();
    return this.paths.get(hash);
  }

  private list(): Promise<void> {
    this.listing ??= (async () => {
      try {
        for (const dir of this.o.dirs) {
          let names: string[];
          try {
            names = await readdir(dir);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code !== 'ENOENT')
              this.o.logger.warn(
                { dir, err: code ?? (err as Error).message },
                'cannot list store path names for the binary cache',
              );
            continue;
          }
          // Lock files sit next to paths being built; they are not paths.
          for (const name of names) if (!name.endsWith('.lock')) this.add(STORE_PREFIX + name);
        }
      } finally {
        this.listedAt = this.now();
        this.listing = undefined;
      }
    })();
    return this.listing;
  }
}
