import type { ProxyProcess } from '../proxy-process';

export type LogLine = Record<string, unknown>;

/**
 * Resolves with the first log line of `proxy` from index `from` on that
 * `match` accepts, as soon as the proxy prints it (event-driven: no polling).
 */
export function waitForLog(proxy: ProxyProcess, match: (line: LogLine) => boolean, from = 0): Promise<LogLine> {
  return new Promise((resolve) => {
    let next = from;
    const check = (): boolean => {
      const lines = proxy.logLines();
      for (; next < lines.length; next++) {
        if (match(lines[next]!)) {
          resolve(lines[next]!);
          return true;
        }
      }
      return false;
    };
    // Runs after proxy-process's own listener has parsed the chunk.
    const onData = (): void => {
      setImmediate(() => {
        if (check()) proxy.child.stdout!.off('data', onData);
      });
    };
    if (!check()) proxy.child.stdout!.on('data', onData);
  });
}
