/** The proxy's per-Execute log lines ("execute", one per Execute), collected as they arrive and awaited by action. */
export interface ExecuteLine {
  action: string;
  outcome?: string;
  references?: number;
  realised?: number;
  joined?: number;
  missing?: number;
  tree?: { nodes?: number; fetchedDirectories?: number; fetchedFiles?: number; memoHits?: number };
  ms?: {
    read?: number;
    walk?: number;
    check?: number;
    realise?: number;
    ensure?: number;
    forward?: number;
    total?: number;
  };
}

export class ExecuteLog {
  private readonly lines = new Map<string, ExecuteLine[]>();
  private readonly waiters = new Map<string, Array<() => void>>();
  private count = 0;

  /** Feed every JSON log line of the proxy here. */
  readonly onJsonLine = (obj: Record<string, unknown>): void => {
    if (obj.msg !== 'execute' || typeof obj.action !== 'string') return;
    // Bounded: the warm scenario logs one line per call and only the cold ones are read.
    if (++this.count > 100_000) return;
    const hash = obj.action.split('/')[0]!;
    const list = this.lines.get(hash) ?? [];
    list.push(obj as unknown as ExecuteLine);
    this.lines.set(hash, list);
    for (const w of this.waiters.get(hash) ?? []) w();
    this.waiters.delete(hash);
  };

  /** Resolves with the first line logged for the action with this hash (waits up to `timeoutMs`). */
  first(hash: string, timeoutMs: number): Promise<ExecuteLine> {
    const have = this.lines.get(hash);
    if (have?.length) return Promise.resolve(have[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`the proxy logged no "execute" line for action ${hash} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      const list = this.waiters.get(hash) ?? [];
      list.push(() => {
        clearTimeout(timer);
        resolve(this.lines.get(hash)![0]!);
      });
      this.waiters.set(hash, list);
    });
  }
}
