/**
 * Telling a garbage collector that is already running about new roots.
 *
 * A GC reads the roots once, when it starts; a root symlink made after that
 * does not protect a path that GC already considers dead. A just-copied path
 * is safe anyway (the copy registers temporary roots with the running GC),
 * but a path that was valid and unrooted when the GC started, and that an
 * action now needs, is not. Nix's own clients close this window through the
 * GC's socket (`<state>/gc-socket/socket`, Nix >= 2.4): while a GC runs it
 * accepts one store path per line, keeps each alive for the rest of its run
 * (waiting first if it is deleting that very path) and answers '1' per path.
 * When no GC runs, connecting fails (no socket, or a stale one: ECONNREFUSED).
 *
 * Order matters and is the caller's: create the root symlinks first, then
 * tell the GC. A GC that starts after the symlinks exist sees them; one that
 * started before has its socket open, so it hears about them here.
 */
import { connect } from 'node:net';
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';
import { GC_REASONS } from './roots-dir';

export type GcSocketAnswer = 'no-gc-running' | 'told';

/**
 * Registers `paths` with the GC running on the store, if any. Rejects
 * UNAVAILABLE when a running GC does not acknowledge them within `timeoutMs`.
 */
export function tellRunningGc(
  socketPath: string,
  paths: readonly string[],
  timeoutMs: number,
): Promise<GcSocketAnswer> {
  if (paths.length === 0) return Promise.resolve('no-gc-running');
  return new Promise((resolve, reject) => {
    const socket = connect({ path: socketPath });
    let connected = false;
    let acks = 0;
    let settled = false;
    const finish = (outcome: GcSocketAnswer | ProxyError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (outcome instanceof ProxyError) reject(outcome);
      else resolve(outcome);
    };
    const timer = setTimeout(
      () =>
        finish(
          new ProxyError(
            Code.UNAVAILABLE,
            GC_REASONS.ROOTS_UNAVAILABLE,
            `the garbage collector running on the shared store did not acknowledge ${paths.length} new root(s) within ${timeoutMs} ms (${socketPath}); try again when it has finished`,
          ),
        ),
      timeoutMs,
    );
    socket.on('connect', () => {
      connected = true;
      socket.write(paths.map((p) => p + '\n').join(''));
    });
    socket.on('data', (chunk: Buffer) => {
      for (const byte of chunk) if (byte === 0x31) acks++;
      if (acks >= paths.length) finish('told');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) finish('no-gc-running');
      // The GC exited with our lines unread (a reset rather than a close): the same as the close below.
      else if (connected && (err.code === 'ECONNRESET' || err.code === 'EPIPE')) finish('told');
      else
        finish(
          new ProxyError(
            Code.UNAVAILABLE,
            GC_REASONS.ROOTS_UNAVAILABLE,
            `telling the running garbage collector about new roots failed (${err.code ?? err.message}) at ${socketPath}`,
            {
              cause: err,
            },
          ),
        );
    });
    socket.on('close', () => {
      // The GC finished (and closed its end) before answering for every path:
      // it is gone, and the later ones it never considered dead.
      if (!settled) finish(connected ? 'told' : 'no-gc-running');
    });
  });
}
