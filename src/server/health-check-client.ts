import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { T } from '../reapi/protos';

export interface HealthCheckOptions {
  /** host:port of the running proxy. */
  address: string;
  /** The whole check (connect, ask, answer) must finish within this. */
  timeoutMs: number;
  /** Service to ask about; '' (default) means the proxy as a whole. */
  service?: string;
  /** Present when the proxy's listener uses TLS; files are PEM paths. */
  tls?: { ca?: string; cert?: string; key?: string; serverName?: string };
}

export interface HealthCheckResult {
  /** 0 when the proxy answered SERVING, 1 otherwise: the process exit code of `nix-reapi-proxy health`. */
  exitCode: 0 | 1;
  /** One line saying what was found and, on failure, what to check. */
  message: string;
}

const STATUS_NAMES: Record<number, string> = { 0: 'UNKNOWN', 1: 'SERVING', 2: 'NOT_SERVING', 3: 'SERVICE_UNKNOWN' };
const SERVING = 1;
const CHECK_PATH = '/grpc.health.v1.Health/Check';

/**
 * Asks a running proxy grpc.health.v1.Health/Check, as container health checks
 * and readiness probes do. Never throws: every failure (unreadable TLS files,
 * nothing listening, a timeout, a server without the health service) becomes
 * exit code 1 with a message saying what to check.
 */
export async function checkHealth(options: HealthCheckOptions): Promise<HealthCheckResult> {
  const where = `${options.tls ? 'grpcs' : 'grpc'}://${options.address}`;
  let credentials: grpc.ChannelCredentials;
  try {
    credentials = channelCredentials(options.tls);
  } catch (err) {
    return { exitCode: 1, message: `health check of ${where} not attempted: ${(err as Error).message}` };
  }
  const channelOptions: grpc.ChannelOptions = { 'grpc.enable_retries': 0 };
  if (options.tls?.serverName) {
    channelOptions['grpc.ssl_target_name_override'] = options.tls.serverName;
    channelOptions['grpc.default_authority'] = options.tls.serverName;
  }
  const client = new grpc.Client(options.address, credentials, channelOptions);
  try {
    const status = await new Promise<number>((resolve, reject) => {
      client.makeUnaryRequest(
        CHECK_PATH,
        (req: { service: string }) => Buffer.from(T.HealthCheckRequest.encode(req).finish()),
        (buf: Buffer) => (T.HealthCheckResponse.decode(buf) as unknown as { status: number }).status,
        { service: options.service ?? '' },
        new grpc.Metadata(),
        { deadline: Date.now() + options.timeoutMs },
        (err, value) => (err ? reject(err) : resolve(value ?? 0)),
      );
    });
    const name = STATUS_NAMES[status] ?? `status ${status}`;
    if (status === SERVING) return { exitCode: 0, message: `${where}: ${name}` };
    const why = status === 2 ? ' (it is shutting down or not ready)' : '';
    return { exitCode: 1, message: `${where}: ${name}${why}` };
  } catch (err) {
    return { exitCode: 1, message: `${where}: ${explain(err as grpc.ServiceError, options)}` };
  } finally {
    client.close();
  }
}

function channelCredentials(tls: HealthCheckOptions['tls']): grpc.ChannelCredentials {
  if (!tls) return grpc.credentials.createInsecure();
  const read = (flag: string, file: string | undefined): Buffer | null => {
    if (!file) return null;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`cannot read --${flag} ${file} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  };
  return grpc.credentials.createSsl(read('ca', tls.ca), read('key', tls.key), read('cert', tls.cert));
}

function explain(err: grpc.ServiceError, options: HealthCheckOptions): string {
  const details = err.details || err.message;
  switch (err.code) {
    case grpc.status.DEADLINE_EXCEEDED:
      return `no answer within ${options.timeoutMs} ms; is the proxy overloaded, or is something else listening there? (--timeout sets the limit)`;
    case grpc.status.UNAVAILABLE:
      return (
        `cannot reach it (${details}); check that the proxy is running and listening on ${options.address}` +
        (options.tls
          ? ' and that --ca/--server-name match its certificate'
          : ', and pass --tls (with --ca) if its listener uses TLS')
      );
    case grpc.status.UNIMPLEMENTED:
      return 'it answers gRPC but has no grpc.health.v1.Health service: is this address the proxy, and not the upstream?';
    case grpc.status.NOT_FOUND:
      return `it does not know the service '${options.service ?? ''}'`;
    default:
      return `health check failed with ${grpc.status[err.code] ?? err.code}: ${details}`;
  }
}
