/**
 * Checks of single configuration values (addresses, URLs, store forms, paths).
 * Each returns undefined when the value is fine, otherwise the reason it is
 * not, phrased to follow the quoted value in a problem line. Pure: no I/O.
 */

const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;
const IPV6_RE = /^\[[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(?:%[A-Za-z0-9_.-]+)?\]$/;
const CONTROL_OR_SPACE_RE = /[\s\u0000-\u001f\u007f]/;

export interface HostPort {
  host: string;
  port: number;
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

export function checkListenAddress(text: string): string | undefined {
  const parsed = parseHostPort(text, { allowPortZero: true });
  return 'error' in parsed ? parsed.error : undefined;
}

/** grpc://host:port or grpcs://host:port, nothing else (no credentials, path or query). */
export function checkUpstreamUrl(text: string): string | undefined {
  const match = /^(grpcs?):\/\/(.*?)\/?$/.exec(text);
  const usage = 'is not grpc://HOST:PORT or grpcs://HOST:PORT (e.g. grpc://buildbarn-frontend:8980)';
  if (!match) return usage;
  const authority = match[2]!;
  if (/[@/?#]/.test(authority)) return `${usage}: no credentials, path or query allowed`;
  const parsed = parseHostPort(authority, { allowPortZero: false });
  return 'error' in parsed ? `${usage}: the part after :// ${parsed.error}` : undefined;
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

const SUBSTITUTER_SCHEMES = ['file:', 'http:', 'https:', 'ssh:', 'ssh-ng:', 's3:'];

/**
 * A Nix substituter as `nix copy --from` accepts it: `local`, `daemon`,
 * file:///abs, http(s)://host/..., ssh://[user@]host, ssh-ng://[user@]host,
 * s3://bucket, each optionally with ?key=value store settings.
 */
export function checkSubstituter(text: string): string | undefined {
  const forms = 'local, daemon, file:///path, http(s)://host/path, ssh://host, ssh-ng://host or s3://bucket';
  if (CONTROL_OR_SPACE_RE.test(text)) return `contains spaces or control characters (accepted: ${forms})`;
  if (/^(local|daemon)(\?.*)?$/.test(text)) return undefined;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `is not a store URL (accepted: ${forms})`;
  }
  if (!SUBSTITUTER_SCHEMES.includes(url.protocol)) {
    return `has unsupported scheme ${url.protocol.replace(/:$/, '')} (accepted: ${forms})`;
  }
  if (url.protocol === 'file:') {
    return url.host === '' && url.pathname.length > 1 ? undefined : 'is not file:///absolute/path';
  }
  if (!url.hostname) return `names no host (accepted: ${forms})`;
  if ((url.protocol === 'ssh:' || url.protocol === 'ssh-ng:') && (url.password || (url.pathname && url.pathname !== '/'))) {
    return 'must be ssh://[user@]host or ssh-ng://[user@]host (no password, no path; put keys in ?ssh-key=...)';
  }
  return undefined;
}

/**
 * The shared store the executors mount: an absolute directory (a chroot
 * store, e.g. an NFS export), `local`, `daemon`, ssh://[user@]host,
 * ssh-ng://[user@]host or unix:///path/to/daemon-socket, URLs optionally
 * with ?key=value store settings.
 */
export function checkSharedStore(text: string): string | undefined {
  const forms = 'an absolute directory, local, daemon, ssh://host, ssh-ng://host or unix:///path/to/socket';
  if (text.startsWith('/')) {
    if (text.replace(/\/+$/, '') === '') return 'is the root directory; use local (or daemon) for the machine\'s own store';
    return checkAbsolutePath(text);
  }
  if (CONTROL_OR_SPACE_RE.test(text)) return `contains spaces or control characters (accepted: ${forms})`;
  if (/^(local|daemon)(\?.*)?$/.test(text)) return undefined;
  const match = /^(ssh|ssh-ng):\/\/(?:([A-Za-z0-9._-]+)@)?([^/?#@:]+)(\?.*)?$/.exec(text);
  if (match) {
    return HOSTNAME_RE.test(match[3]!) ? undefined : `has an invalid host name (accepted: ${forms})`;
  }
  const unix = /^unix:\/\/(\/[^?#]*)(\?.*)?$/.exec(text);
  if (unix) return checkAbsolutePath(unix[1]!) === undefined ? undefined : 'must be unix:///absolute/path/to/socket';
  return `is not a supported shared store (accepted: ${forms})`;
}

/** Shows a URL without a password, for logs. */
export function redactUrl(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^/@:]*):[^/@]*@/i, '$1:***@');
}
