/**
 * Parsers and checks of single configuration values (addresses, upstream
 * URLs, paths, signing keys). A parser returns the typed value or the reason
 * the text is not one; a check returns undefined when the value is fine.
 * Reasons are phrased to follow the quoted value in a problem line. Store
 * URLs are parsed in src/store/store-url.ts. Pure: no I/O.
 */
import type { UpstreamTarget } from './upstream-target';

const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;
const IPV6_RE = /^\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.-]+)?\]$/;
const CONTROL_OR_SPACE_RE = /[\s\u0000-\u001f\u007f]/;

/** A validated listen or dial address. */
export interface HostPort {
  /** Host name, IPv4 address, or IPv6 address in brackets (`[::1]`). */
  host: string;
  /** 0..65535; 0 only where a free port may be picked (listen addresses). */
  port: number;
}

/** `host:port` as it was written (IPv6 in brackets). */
export function formatHostPort(address: HostPort): string {
  return `${address.host}:${address.port}`;
}

/** Splits `host:port`, `[v6]:port`; the host keeps its brackets. */
export function parseHostPort(text: string, opts: { allowPortZero: boolean }): HostPort | { error: string } {
  const colon = text.lastIndexOf(':');
  const usage = `is not HOST:PORT (e.g. 127.0.0.1:8980, [::1]:8980, build.example.com:443)`;
  if (colon <= 0) return { error: usage };
  const host = text.slice(0, colon);
  const portText = text.slice(colon + 1);
  if (!(HOSTNAME_RE.test(host) || IPV6_RE.test(host))) return { error: usage };
  if (!/^\d{1,5}$/.test(portText)) return { error: `${usage}: the port must be a number` };
  const port = Number(portText);
  const min = opts.allowPortZero ? 0 : 1;
  if (port < min || port > 65535) return { error: `has port ${port}, outside ${min}..65535` };
  return { host, port };
}

/** A listen address: HOST:PORT, port 0 picks a free port. */
export function parseListenAddress(text: string): { value: HostPort } | { error: string } {
  const parsed = parseHostPort(text, { allowPortZero: true });
  return 'error' in parsed ? parsed : { value: parsed };
}

export function checkListenAddress(text: string): string | undefined {
  const parsed = parseListenAddress(text);
  return 'error' in parsed ? parsed.error : undefined;
}

/** grpc://host:port or grpcs://host:port, nothing else (no credentials, path or query). */
export function parseUpstreamTarget(text: string): { value: UpstreamTarget } | { error: string } {
  const match = /^(grpcs?):\/\/(.*?)\/?$/.exec(text);
  const usage = 'is not grpc://HOST:PORT or grpcs://HOST:PORT (e.g. grpc://buildbarn-frontend:8980)';
  if (!match) return { error: usage };
  const authority = match[2]!;
  if (/[@/?#]/.test(authority)) return { error: `${usage}: no credentials, path or query allowed` };
  const parsed = parseHostPort(authority, { allowPortZero: false });
  if ('error' in parsed) return { error: `${usage}: the part after :// ${parsed.error}` };
  const tls = match[1] === 'grpcs';
  const hostPort = formatHostPort(parsed);
  return {
    value: {
      url: text,
      tls,
      host: parsed.host,
      port: parsed.port,
      authority: hostPort,
      origin: `${tls ? 'https' : 'http'}://${hostPort}`,
    },
  };
}

export function checkUpstreamUrl(text: string): string | undefined {
  const parsed = parseUpstreamTarget(text);
  return 'error' in parsed ? parsed.error : undefined;
}

/** A binary cache's public key as `nix-store --generate-binary-cache-key` prints it: NAME:BASE64. */
export function checkTrustedPublicKey(key: string): string | undefined {
  return /^[A-Za-z0-9._+-]+:[A-Za-z0-9+/]+={0,2}$/.test(key)
    ? undefined
    : 'is not NAME:BASE64KEY (as printed by nix-store --generate-binary-cache-key, e.g. cache.nixos.org-1:6NCH...)';
}

/** http(s)://host[:port][/path] without credentials, query or fragment: what clients put in `nix copy --to`. */
export function checkCachePublicUrl(text: string): string | undefined {
  const usage = 'is not http(s)://HOST[:PORT][/PATH] (e.g. https://nix-proxy.example.com:8990)';
  if (CONTROL_OR_SPACE_RE.test(text) || /['"\\`$]/.test(text))
    return `${usage}: no spaces, quotes or control characters`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return usage;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return usage;
  if (url.username || url.password) return `${usage}: credentials go in the client's netrc file, not the URL`;
  if (url.search || url.hash || text.includes('?') || text.includes('#')) return `${usage}: no query or fragment`;
  return undefined;
}

/** A client-certificate subject allowed to push: NAME or NAME=push-unsigned. */
export function checkPushSubject(text: string): string | undefined {
  return /^[^=\s\u0000-\u001f\u007f]{1,256}(=push|=push-unsigned)?$/.test(text)
    ? undefined
    : 'is not SUBJECT or SUBJECT=push-unsigned (the certificate CN, no spaces or "=")';
}

/** An absolute, normalised path without control characters. */
export function checkAbsolutePath(text: string): string | undefined {
  if (!text.startsWith('/')) return 'is not an absolute path';
  if (CONTROL_OR_SPACE_RE.test(text.replace(/ /g, ''))) return 'contains control characters';
  if (text.split('/').some((segment) => segment === '..' || segment === '.')) {
    return "contains '.' or '..' segments; write the path out in full";
  }
  return undefined;
}

/** Shows a URL without a password, for logs. */
export function redactUrl(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, '$1:***@');
}
