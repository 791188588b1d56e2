import { readFileSync } from 'node:fs';
import http2, { type Http2Server, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { SESSION_WINDOW_BYTES, STREAM_WINDOW_BYTES } from '../passthrough/upstream-pool';
import type { CallRouter } from './call-router';

export interface ListenerOptions {
  host: string;
  port: number;
  tls?: { cert: string; key: string; clientCa?: string };
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  /** Connections held at once (more are refused) and calls open at once on one. */
  maxConnections?: number;
  maxStreamsPerConnection?: number;
}

/**
 * The HTTP/2 listener: accepts connections (plaintext or TLS, optionally
 * requiring client certificates), hands each stream to the router, pings idle
 * clients, and shuts down gracefully: stop accepting, GOAWAY to every client,
 * let in-flight calls finish, then drop what is left after the grace period.
 */
export class ProxyServer {
  private readonly server: Http2Server | Http2SecureServer;
  private readonly sessions = new Set<ServerHttp2Session>();

  constructor(
    private readonly options: ListenerOptions,
    router: CallRouter,
    private readonly logger: Logger,
  ) {
    const common = {
      settings: {
        initialWindowSize: STREAM_WINDOW_BYTES,
        maxConcurrentStreams: options.maxStreamsPerConnection ?? 10_000,
        enablePush: false,
      },
      maxSessionMemory: 256,
      // HTTP/2 PRIORITY and other frames from clients are not work we queue; keep the default limits otherwise.
    };
    if (options.tls) {
      const secure: http2.SecureServerOptions = {
        ...common,
        cert: readFileSync(options.tls.cert),
        key: readFileSync(options.tls.key),
        ALPNProtocols: ['h2'],
        allowHTTP1: false,
      };
      if (options.tls.clientCa) {
        secure.ca = readFileSync(options.tls.clientCa);
        secure.requestCert = true;
        secure.rejectUnauthorized = true;
      }
      this.server = http2.createSecureServer(secure);
    } else {
      this.server = http2.createServer(common);
    }
    if (options.maxConnections !== undefined) this.server.maxConnections = options.maxConnections;
    this.server.on('session', (session: ServerHttp2Session) => {
      this.track(session);
      // The peer is read once per connection: session.socket is a guarded proxy, costly to touch on every call.
      const socket = session.socket;
      // An IPv4 client on a dual-stack listener shows as ::ffff:a.b.c.d: one client, one name, whichever form.
      const peer = socket
        ? `${(socket.remoteAddress ?? '').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '')}:${socket.remotePort}`
        : 'unknown';
      session.on(
        'stream',
        (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, _flags: number, rawHeaders: string[]) => {
          router.route(stream, headers, rawHeaders, peer);
        },
      );
    });
    this.server.on('sessionError', (err) => this.logger.debug({ err: err.message }, 'client connection error'));
  }

  listen(): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /** Graceful stop: resolves when every connection is gone (forcefully after `graceMs`). */
  close(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const forced = setTimeout(() => {
        if (this.sessions.size > 0)
          this.logger.warn({ connections: this.sessions.size }, 'grace period over; dropping remaining connections');
        for (const s of this.sessions) s.destroy();
      }, graceMs);
      forced.unref();
      this.server.close(() => {
        clearTimeout(forced);
        resolve();
      });
      for (const s of this.sessions) s.close();
    });
  }

  private track(session: ServerHttp2Session): void {
    this.sessions.add(session);
    session.on('error', () => {});
    let pinger: NodeJS.Timeout | undefined;
    if (this.options.keepaliveTimeMs > 0) {
      pinger = setInterval(() => {
        if (session.closed || session.destroyed) return;
        const timer = setTimeout(() => session.destroy(), this.options.keepaliveTimeoutMs);
        timer.unref();
        if (!session.ping(() => clearTimeout(timer))) clearTimeout(timer);
      }, this.options.keepaliveTimeMs);
      pinger.unref();
    }
    session.once('connect', () => session.setLocalWindowSize(SESSION_WINDOW_BYTES));
    try {
      session.setLocalWindowSize(SESSION_WINDOW_BYTES);
    } catch {
      // Not yet connected; the 'connect' listener does it.
    }
    session.once('close', () => {
      if (pinger) clearInterval(pinger);
      this.sessions.delete(session);
    });
  }
}
