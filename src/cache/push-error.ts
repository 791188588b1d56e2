/** A push the binary cache refuses or cannot complete: `status` is the HTTP status, `message` the body a person reads. */
export class PushError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'PushError';
  }
}
