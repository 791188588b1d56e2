/** Where the upstream REAPI server is: parsed once from grpc://host:port or grpcs://host:port by the config loader. */
export interface UpstreamTarget {
  /** The URL as configured, for messages and logs. */
  url: string;
  /** grpcs:// */
  tls: boolean;
  /** Host name, IPv4 address, or IPv6 address in brackets. */
  host: string;
  port: number;
  /** http(s)://host:port, for node:http2 connect. */
  origin: string;
  /** host:port, for the :authority header and grpc-js targets. */
  authority: string;
}
