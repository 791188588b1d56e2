/** A gRPC status a fake handler ends its call with. */
export class GrpcStatusError extends Error {
  constructor(
    readonly code: number,
    message: string,
    /** Encoded google.rpc.Status for grpc-status-details-bin. */
    readonly details?: Uint8Array,
  ) {
    super(message);
    this.name = 'GrpcStatusError';
  }
}
