/** Told about every call the proxy finished, whoever answered it (the metrics backend implements it). */
export interface CallObserver {
  /** Called once per finished call. */
  callDone(path: string, code: number, durationMs: number): void;
}
