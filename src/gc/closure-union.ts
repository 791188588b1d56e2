/**
 * The union of closures of a growing set of roots, and its NAR size, with
 * each path counted once however many roots share it.
 *
 * Adding roots one at a time visits every path of the union once in total:
 * by Nix's closure invariant, a path already in the union brings its whole
 * closure with it, so the walk stops there. That makes "keep the most
 * recently used roots while they fit the budget" linear in the size of the
 * union, instead of one closure walk per root. Pure.
 */
import type { PathInfo } from './path-info-json';

export class ClosureUnion {
  private readonly members = new Set<string>();
  private bytes = 0;

  constructor(private readonly info: ReadonlyMap<string, PathInfo>) {}

  get narBytes(): number {
    return this.bytes;
  }

  get size(): number {
    return this.members.size;
  }

  has(path: string): boolean {
    return this.members.has(path);
  }

  /** Adds `root`'s closure; returns the bytes it added. Paths without info count 0 bytes and have no references. */
  add(root: string): number {
    const added = this.newPaths(root);
    return this.commit(added);
  }

  /**
   * Adds `root`'s closure only if the union then stays within `limitBytes`;
   * returns whether it did. A root that does not fit leaves the union unchanged.
   */
  addIfWithin(root: string, limitBytes: number): boolean {
    const added = this.newPaths(root);
    const extra = added.reduce((n, p) => n + (this.info.get(p)?.narSize ?? 0), 0);
    if (this.bytes + extra > limitBytes) return false;
    this.commit(added);
    return true;
  }

  private commit(paths: readonly string[]): number {
    let extra = 0;
    for (const p of paths) {
      this.members.add(p);
      extra += this.info.get(p)?.narSize ?? 0;
    }
    this.bytes += extra;
    return extra;
  }

  /** Paths of `root`'s closure not yet in the union (iterative: closures can be deep). */
  private newPaths(root: string): string[] {
    if (this.members.has(root)) return [];
    const seen = new Set<string>([root]);
    const stack = [root];
    while (stack.length > 0) {
      const p = stack.pop()!;
      for (const ref of this.info.get(p)?.references ?? []) {
        if (!this.members.has(ref) && !seen.has(ref)) {
          seen.add(ref);
          stack.push(ref);
        }
      }
    }
    return [...seen];
  }
}

/** NAR bytes of the union of the closures of `roots`. */
export function unionNarBytes(roots: Iterable<string>, info: ReadonlyMap<string, PathInfo>): number {
  const union = new ClosureUnion(info);
  for (const r of roots) union.add(r);
  return union.narBytes;
}
