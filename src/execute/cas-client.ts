import * as grpc from '@grpc/grpc-js';
import type { UpstreamTarget } from '../config/upstream-target';

export interface CasClientOptions {
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string };
  /** Largest response the CAS reader asks for (its maxResponseBytes). */
  maxResponseBytes: number;
  keepalive?: { timeMs: number; timeoutMs: number };
}

/** Room above the reader's response budget for framing and per-entry overhead. */
const RECEIVE_SLACK_BYTES = 64 * 1024;

/**
 * The grpc-js client the CAS reader uses for its own reads from the upstream
 * (the relayed client calls go over the pass-through connections instead).
 * Built by the composition root; closed by it on shutdown.
 */
export function createCasClient(target: UpstreamTarget, options: CasClientOptions): grpc.Client {
  const credentials = target.tls
    ? grpc.credentials.createSsl(options.tls?.ca ?? null, options.tls?.key ?? null, options.tls?.cert ?? null)
    : grpc.credentials.createInsecure();
  const channelOptions: grpc.ChannelOptions = {
    'grpc.max_receive_message_length': options.maxResponseBytes + RECEIVE_SLACK_BYTES,
    'grpc.max_send_message_length': options.maxResponseBytes + RECEIVE_SLACK_BYTES,
  };
  if (options.tls?.serverName) channelOptions['grpc.ssl_target_name_override'] = options.tls.serverName;
  if (options.keepalive && options.keepalive.timeMs > 0) {
    channelOptions['grpc.keepalive_time_ms'] = options.keepalive.timeMs;
    channelOptions['grpc.keepalive_timeout_ms'] = options.keepalive.timeoutMs;
  }
  return new grpc.Client(target.authority, credentials, channelOptions);
}
