import { FrameDecoder, framePayload } from '../rpc/grpc-frame';
import { Code, decodeGrpcMessage } from '../reapi/grpc-status';
import type { ServerCall } from '../rpc/server-call';
import type { RelayOptions, RelayOutcome, UpstreamCaller } from './upstream-caller';
import { UpstreamExchange, type HeaderMap } from './upstream-exchange';
import type { UpstreamPool } from './upstream-pool';

/** Response headers that describe the upstream's framing, which the relay does not keep (it re-frames plainly). */
const FRAMING_HEADERS = new Set(['content-type', 'grpc-encoding', 'grpc-accept-encoding', 'content-length', 'date']);
const STATUS_TRAILERS = new Set(['grpc-status', 'grpc-message', 'grpc-status-details-bin']);

/**
 * `UpstreamCaller` over the pooled HTTP/2 connections. Response messages are
 * decoded from their frames only to be shown to `onMessage`; the message bytes
 * the client receives are the upstream's own.
 */
export class Http2UpstreamCaller implements UpstreamCaller {
  constructor(
    private readonly pool: UpstreamPool,
    private readonly maxResponseMessageBytes: number,
  ) {}

  relay(call: ServerCall, path: string, requestFrame: Buffer, options: RelayOptions = {}): Promise<RelayOutcome> {
    return new Promise((resolve) => {
      let messages = 0;
      let encoding: string | undefined;
      let chain = Promise.resolve();
      const decoder = new FrameDecoder(this.maxResponseMessageBytes);
      const finish = (code: number): void => resolve({ code, messages });

      const exchange = new UpstreamExchange(this.pool, path, call.metadata, call.deadline, {
        response(_status, headers, trailersOnly) {
          const enc = headers['grpc-encoding'];
          encoding = typeof enc === 'string' ? enc : undefined;
          if (trailersOnly) {
            const code = Number(headers['grpc-status'] ?? Code.UNKNOWN);
            call.end(statusFrom(headers));
            finish(code);
            return;
          }
          if (!call.headersSent) call.sendHeaders(withoutKeys(headers, FRAMING_HEADERS));
        },
        data(chunk) {
          let frames;
          try {
            frames = decoder.push(chunk);
          } catch (err) {
            exchange.cancel();
            call.end({
              code: Code.RESOURCE_EXHAUSTED,
              message: `upstream response too large: ${(err as Error).message}`,
            });
            finish(Code.RESOURCE_EXHAUSTED);
            return true;
          }
          if (frames.length === 0) return true;
          chain = chain.then(async () => {
            for (const f of frames) {
              const message = framePayload(f, encoding, Number.MAX_SAFE_INTEGER);
              messages++;
              options.onMessage?.(message);
              await call.sendMessage(message);
            }
          });
          // Pause the upstream until the client has taken these messages.
          chain.then(
            () => exchange.resume(),
            () => exchange.resume(),
          );
          return false;
        },
        end(trailers: HeaderMap) {
          void chain.then(() => {
            call.end(statusFrom(trailers));
            finish(Number(trailers['grpc-status'] ?? Code.UNKNOWN));
          });
        },
        fail(code, message) {
          void chain.then(() => {
            call.end({ code: code as never, message });
            finish(code);
          });
        },
      });
      if (call.signal.aborted) {
        exchange.cancel();
        finish(Code.CANCELLED);
        return;
      }
      call.signal.addEventListener(
        'abort',
        () => {
          exchange.cancel();
          finish(Code.CANCELLED);
        },
        { once: true },
      );
      exchange.write(requestFrame);
      exchange.end();
    });
  }
}

function statusFrom(fields: HeaderMap): { code: never; message?: string; details?: Buffer; trailers: HeaderMap } {
  const code = Number(fields['grpc-status'] ?? Code.UNKNOWN) as never;
  const msg = fields['grpc-message'];
  const details = fields['grpc-status-details-bin'];
  const out: { code: never; message?: string; details?: Buffer; trailers: HeaderMap } = {
    code,
    trailers: withoutKeys(fields, new Set([...STATUS_TRAILERS, ...FRAMING_HEADERS])),
  };
  if (typeof msg === 'string') out.message = decodeGrpcMessage(msg);
  if (typeof details === 'string') out.details = Buffer.from(details, 'base64');
  return out;
}

function withoutKeys(fields: HeaderMap, drop: Set<string>): HeaderMap {
  const out: HeaderMap = {};
  for (const [k, v] of Object.entries(fields)) if (!drop.has(k)) out[k] = v;
  return out;
}
