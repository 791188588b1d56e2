import type { Config } from './config';
import { KEY_BY_PATH, getPath } from './config-keys';
import { allNamesOf, describeOrigin, type Sources } from './sources';

/**
 * Rules that involve more than one key, checked on the merged Config. Each
 * problem names the setting that is present (and where it came from) and
 * every way to set the one that is missing. Pure.
 */
export function crossCheckConfig(config: Config, sources: Sources): string[] {
  const problems: string[] = [];
  const isSet = (path: string) => getPath(config, path) !== undefined;
  const named = (path: string) => describeOrigin(path, sources[path] ?? { kind: 'default' });
  const ways = (path: string) => allNamesOf(KEY_BY_PATH.get(path)!);

  const needsPartner = (present: string, missing: string, why: string) => {
    if (isSet(present) && !isSet(missing)) {
      problems.push(`${named(present)} is set but ${missing} is not: ${why}; set ${ways(missing)}`);
    }
  };
  needsPartner('tls.cert', 'tls.key', 'serving TLS needs the certificate and its private key');
  needsPartner('tls.key', 'tls.cert', 'serving TLS needs the certificate and its private key');
  needsPartner('tls.clientCa', 'tls.cert', 'client certificates (mTLS) can only be checked on a TLS listener');
  needsPartner('cacheTls.cert', 'cacheTls.key', 'serving TLS needs the certificate and its private key');
  needsPartner('cacheTls.key', 'cacheTls.cert', 'serving TLS needs the certificate and its private key');
  needsPartner('cacheListen', 'sharedStore', 'pushed paths are imported into the shared store');
  needsPartner('upstreamTls.cert', 'upstreamTls.key', 'a client certificate is useless without its private key');
  needsPartner('upstreamTls.key', 'upstreamTls.cert', 'a private key is useless without its certificate');

  if (!config.upstream.tls) {
    for (const path of ['upstreamTls.ca', 'upstreamTls.cert', 'upstreamTls.key', 'upstreamTls.serverName']) {
      if (isSet(path)) {
        problems.push(
          `${named(path)} is set but ${named('upstream')} is ${JSON.stringify(config.upstream.url)}, which is plaintext: ` +
            'use grpcs:// for TLS to the upstream, or drop the upstream TLS settings',
        );
      }
    }
  }
  return problems;
}
