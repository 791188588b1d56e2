import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';

/** Where the exposition text comes from (PrometheusMetrics.exposition). */
export type ExpositionSource = () => Promise<{ contentType: string; body: string }>;

export interface RunningMetricsServer {
  address: AddressInfo;
  /** host:port a scraper connects to. */
  endpoint: string;
  /** Stops accepting and closes idle and open scrape connections. */
  close(): Promise<void>;
}

/**
 * A plain HTTP/1.1 listener for Prometheus: GET (or HEAD) /metrics answers the
 * exposition text, anything else 404 or 405. Kept off the gRPC port so the
 * metrics can be reachable where the REAPI port is not, and the reverse.
 * Scrapes are small and rare, so each request gets a short time limit and
 * request bodies are ignored.
 */
export async function startMetricsServer(
  listen: { host: string; port: number },
  source: ExpositionSource,
  logger: Logger,
): Promise<RunningMetricsServer> {
  const server = createServer((req, res) => void answer(req, res, source, logger));
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host.replace(/^\[(.*)\]$/, '$1'), () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'metrics listener failed'));
  const address = server.address() as AddressInfo;
  const endpoint = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  return {
    address,
    endpoint,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  source: ExpositionSource,
  logger: Logger,
): Promise<void> {
  const path = (req.url ?? '').split('?')[0];
  if (path !== '/metrics') {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found: metrics are at /metrics\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('only GET and HEAD\n');
    return;
  }
  try {
    const { contentType, body } = await source();
    res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (err) {
    logger.error({ err }, 'collecting metrics failed');
    res
      .writeHead(500, { 'content-type': 'text/plain; charset=utf-8' })
      .end('collecting metrics failed; see the proxy log\n');
  }
}
