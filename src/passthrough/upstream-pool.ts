import http2, { type ClientHttp2Session, type SecureClientSessionOptions } from 'node:http2';
import { checkServerIdentity } from 'node:tls';
import type { Logger } from 'pino';
import type { UpstreamTarget } from '../config/upstream-target';

export interface UpstreamPoolOptions {
  connections: number;
  connectTimeoutMs: number;
  keepaliveTimeMs: number;
  keepaliveTimeoutMs: number;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string };
}

/** HTTP/2 settings for forwarding: windows large enough that one stream can fill a loopback or LAN link. */
export const STREAM_WINDOW_BYTES = 1024 * 1024;
export const SESSION_WINDOW_BYTES = 16 * 1024 * 1024;

/**
 * A small, fixed set of HTTP/2 connections to the upstream, used round-robin.
 *
 * Contract: `session()` never throws and never waits; it returns a session that
 * is connected or connecting (requests made while connecting are queued by
 * node). A connection that fails, times out connecting, misses a keepalive PING
 * or receives GOAWAY is replaced on the next call; its in-flight streams fail on
 * their own and are answered by the forwarder. `close()` lets in-flight streams
 * finish; `destroy()` drops them.
 */
export class UpstreamPool {
  private readonly slots: (ClientHttp2Session | undefined)[];
  private next = 0;
  private closing = false;
  private readonly connected = new WeakSet<ClientHttp2Session>();

  constructor(
    readonly target: UpstreamTarget,
    private readonly options: UpstreamPoolOptions,
    private readonly logger: Logger,
  ) {
    this.slots = new Array(Math.max(1, options.connections)).fill(undefined);
  }

  session(): ClientHttp2Session {
    const i = this.next;
    this.next = (this.next + 1) % this.slots.length;
    let s = this.slots[i];
    if (s === undefined || s.closed || s.destroyed) {
      s = this.connect(i);
      this.slots[i] = s;
    }
    return s;
  }

  /** Whether this session ever finished connecting (to tell "unreachable" from "connection lost"). */
  wasConnected(session: ClientHttp2Session): boolean {
    return this.connected.has(session);
  }

  close(): void {
    this.closing = true;
    for (const s of this.slots) s?.close();
  }

  destroy(): void {
    this.closing = true;
    for (const s of this.slots) s?.destroy();
  }

  private connect(slot: number): ClientHttp2Session {
    const { target, options } = this;
    const connectOptions: SecureClientSessionOptions = {
      settings: { initialWindowSize: STREAM_WINDOW_BYTES, enablePush: false },
      maxSessionMemory: 256,
      peerMaxConcurrentStreams: 100_000,
    };
    if (target.tls) {
      connectOptions.ALPNProtocols = ['h2'];
      if (options.tls?.ca) connectOptions.ca = options.tls.ca;
      if (options.tls?.cert) connectOptions.cert = options.tls.cert;
      if (options.tls?.key) connectOptions.key = options.tls.key;
      connectOptions.servername = options.tls?.serverName ?? (isIp(target.host) ? '' : target.host);
      if (options.tls?.serverName) {
        const expected = options.tls.serverName;
        connectOptions.checkServerIdentity = (_host, cert) => checkServerIdentity(expected, cert);
      }
    }
    const session = http2.connect(target.origin, connectOptions);
    const log = this.logger.child({ upstream: target.url, connection: slot });
    const forget = (): void => {
      if (this.slots[slot] === session) this.slots[slot] = undefined;
    };
    const connectTimer = setTimeout(() => {
      log.warn({ timeoutMs: options.connectTimeoutMs }, 'upstream connection attempt timed out');
      session.destroy(
        Object.assign(new Error(`connect timed out after ${options.connectTimeoutMs} ms`), { code: 'ETIMEDOUT' }),
      );
    }, options.connectTimeoutMs);
    connectTimer.unref();
    let pinger: NodeJS.Timeout | undefined;
    session.once('connect', () => {
      clearTimeout(connectTimer);
      this.connected.add(session);
      session.setLocalWindowSize(SESSION_WINDOW_BYTES);
      log.debug('upstream connected');
      if (options.keepaliveTimeMs > 0) {
        pinger = setInterval(() => this.ping(session, log), options.keepaliveTimeMs);
        pinger.unref();
      }
    });
    session.on('error', (err) => {
      log.warn(
        { err: { message: err.message, code: (err as NodeJS.ErrnoException).code } },
        'upstream connection error',
      );
    });
    session.on('goaway', (code) => {
      log.info({ code }, 'upstream sent GOAWAY; new calls use a new connection');
      forget();
    });
    session.once('close', () => {
      clearTimeout(connectTimer);
      if (pinger) clearInterval(pinger);
      forget();
      if (!this.closing) log.debug('upstream connection closed');
    });
    // Idle upstream connections must not keep the process alive on shutdown.
    session.unref();
    return session;
  }

  private ping(session: ClientHttp2Session, log: Logger): void {
    if (session.closed || session.destroyed) return;
    const timer = setTimeout(() => {
      log.warn(
        { timeoutMs: this.options.keepaliveTimeoutMs },
        'upstream keepalive PING unanswered; dropping connection',
      );
      session.destroy(Object.assign(new Error('keepalive timeout'), { code: 'ETIMEDOUT' }));
    }, this.options.keepaliveTimeoutMs);
    timer.unref();
    const sent = session.ping((err) => {
      clearTimeout(timer);
      if (err && !session.destroyed) log.debug({ err: err.message }, 'upstream PING failed');
    });
    if (!sent) clearTimeout(timer);
  }
}

function isIp(host: string): boolean {
  return host.startsWith('[') || /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}
