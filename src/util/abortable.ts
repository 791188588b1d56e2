/**
 * Waiting with an AbortSignal: a caller that gives up stops waiting at once,
 * while the work it was waiting for may go on for others.
 */
import { ProxyError } from '../errors';
import { Code } from '../reapi/grpc-status';

export function cancelledError(what: string): ProxyError {
  return new ProxyError(Code.CANCELLED, 'CANCELLED', `${what}: cancelled because the request was cancelled`);
}

/** Settles like `work`, or rejects CANCELLED as soon as `signal` aborts (without stopping `work`). */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(cancelledError(what));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      work.catch(() => undefined);
      reject(cancelledError(what));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

/** Resolves after `ms`, or rejects CANCELLED when `signal` aborts first. */
export function sleep(ms: number, signal: AbortSignal, what: string): Promise<void> {
  if (signal.aborted) return Promise.reject(cancelledError(what));
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(cancelledError(what));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
