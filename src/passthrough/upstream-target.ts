/** Where the upstream REAPI server is: parsed from grpc://host:port or grpcs://host:port. */
export interface UpstreamTarget {
  url: string;
  tls: boolean;
  host: string;
  port: number;
  /** http(s)://host:port, for node:http2 connect. */
  origin: string;
  /** host:port, for the :authority header and grpc-js targets. */
  authority: string;
}

export function parseUpstreamUrl(url: string): UpstreamTarget {
  const m = /^(grpcs?):\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(url);
  if (!m) throw new Error(`upstream '${url}' is not grpc://host:port or grpcs://host:port`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`upstream '${url}' has port ${port} outside 1-65535`);
  const tls = m[1] === 'grpcs';
  const host = m[2]!;
  const authority = `${host}:${port}`;
  return { url, tls, host, port, authority, origin: `${tls ? 'https' : 'http'}://${authority}` };
}
