/** Node timers fire at once when asked to wait longer than this (about 24.8 days). */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Calls `fn` once the absolute time `deadline` (epoch ms) has passed. Deadlines
 * further away than a Node timer can wait are reached in several hops, so a
 * client's grpc-timeout of weeks never fires early. Returns a cancel function.
 */
export function onDeadline(deadline: number, fn: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    const remaining = deadline - Date.now();
    if (remaining <= MAX_TIMER_MS) {
      timer = setTimeout(fn, Math.max(0, remaining));
    } else {
      timer = setTimeout(arm, MAX_TIMER_MS);
    }
    timer.unref?.();
  };
  arm();
  return () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  };
}
