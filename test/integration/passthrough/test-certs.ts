import { X509Certificate, createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * X.509 certificates for TLS tests, made with node:crypto alone (Node has no
 * certificate builder, so the DER is written here; no openssl needed on CI).
 * ECDSA P-256 keys, ecdsa-with-SHA256 signatures, v3 extensions that OpenSSL
 * checks during a handshake: basicConstraints, keyUsage, extKeyUsage,
 * subjectAltName (localhost, 127.0.0.1) and key identifiers.
 */

export interface Issued {
  certPem: string;
  keyPem: string;
  cert: X509Certificate;
  key: KeyObject;
  publicSpki: Buffer;
}

export interface TestPki {
  dir: string;
  /** PEM file paths. */
  files: {
    ca: string;
    serverCert: string;
    serverKey: string;
    clientCert: string;
    clientKey: string;
    /** A second, unrelated CA and a client certificate it signed: must be refused where `ca` is required. */
    rogueCa: string;
    rogueClientCert: string;
    rogueClientKey: string;
  };
  pem: {
    ca: Buffer;
    serverCert: Buffer;
    serverKey: Buffer;
    clientCert: Buffer;
    clientKey: Buffer;
    rogueClientCert: Buffer;
    rogueClientKey: Buffer;
  };
  /** Removes the directory. */
  remove(): void;
}

// --- DER ---------------------------------------------------------------------

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tagByte: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tagByte]), length(body.length), body]);
}

const seq = (...c: Buffer[]) => tlv(0x30, ...c);
const set = (...c: Buffer[]) => tlv(0x31, ...c);
const octets = (b: Buffer) => tlv(0x04, b);
const bitString = (b: Buffer, unusedBits = 0) => tlv(0x03, Buffer.from([unusedBits]), b);
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
const TRUE = tlv(0x01, Buffer.from([0xff]));

function integer(b: Buffer): Buffer {
  let v = b;
  while (v.length > 1 && v[0] === 0 && v[1]! < 0x80) v = v.subarray(1);
  if (v[0]! >= 0x80) v = Buffer.concat([Buffer.from([0]), v]);
  return tlv(0x02, v);
}

function oid(dotted: string): Buffer {
  const arcs = dotted.split('.').map(Number);
  const out = [40 * arcs[0]! + arcs[1]!];
  for (const arc of arcs.slice(2)) {
    const groups: number[] = [];
    for (let v = arc; ; v = Math.floor(v / 128)) {
      groups.unshift(v & 0x7f);
      if (v < 128) break;
    }
    out.push(...groups.map((g, i) => (i < groups.length - 1 ? g | 0x80 : g)));
  }
  return tlv(0x06, Buffer.from(out));
}

function utcTime(date: Date): Buffer {
  const p = (n: number) => String(n).padStart(2, '0');
  const s = `${p(date.getUTCFullYear() % 100)}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}Z`;
  return tlv(0x17, Buffer.from(s, 'ascii'));
}

const name = (cn: string) => seq(set(seq(oid('2.5.4.3'), utf8(cn))));
const extension = (id: string, value: Buffer, critical = false) =>
  seq(oid(id), ...(critical ? [TRUE] : []), octets(value));
const keyId = (spki: Buffer) => createHash('sha1').update(spki).digest();

const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));

// --- certificates ----------------------------------------------------------

interface Request {
  commonName: string;
  ca: boolean;
  /** Issuer; self-signed when absent. */
  issuer?: Issued;
}

function issue(request: Request): Issued {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const publicSpki = publicKey.export({ type: 'spki', format: 'der' });
  const issuerName = request.issuer ? request.issuer.cert.subject.replace(/^CN=/, '') : request.commonName;
  const signerKey = request.issuer?.key ?? privateKey;
  const authorityKey = keyId(request.issuer?.publicSpki ?? publicSpki);
  const now = Date.now();

  const extensions = request.ca
    ? [
        extension('2.5.29.19', seq(TRUE), true),
        // digitalSignature, keyCertSign, cRLSign
        extension('2.5.29.15', bitString(Buffer.from([0x86]), 1), true),
      ]
    : [
        extension('2.5.29.19', seq(), true),
        // digitalSignature
        extension('2.5.29.15', bitString(Buffer.from([0x80]), 7), true),
        // serverAuth, clientAuth
        extension('2.5.29.37', seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))),
        // dNSName localhost, iPAddress 127.0.0.1
        extension('2.5.29.17', seq(tlv(0x82, Buffer.from('localhost')), tlv(0x87, Buffer.from([127, 0, 0, 1])))),
      ];
  extensions.push(extension('2.5.29.14', octets(keyId(publicSpki))));
  extensions.push(extension('2.5.29.35', seq(tlv(0x80, authorityKey))));

  const tbs = seq(
    tlv(0xa0, integer(Buffer.from([2]))),
    integer(randomBytes(16)),
    ECDSA_SHA256,
    name(issuerName),
    seq(utcTime(new Date(now - 3_600_000)), utcTime(new Date(now + 7 * 86_400_000))),
    name(request.commonName),
    publicSpki,
    tlv(0xa3, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, signerKey);
  const der = seq(tbs, ECDSA_SHA256, bitString(signature));
  const certPem = `-----BEGIN CERTIFICATE-----\n${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  const cert = new X509Certificate(certPem);
  const verifier = request.issuer ? request.issuer.cert.publicKey : publicKey;
  if (!cert.verify(verifier)) throw new Error(`test-certs: the certificate for ${request.commonName} does not verify`);
  return {
    certPem,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    cert,
    key: privateKey,
    publicSpki,
  };
}

/** A CA, a server and a client certificate it signed, and a rogue CA with its own client, as PEM files in a temp dir. */
export function makeTestPki(): TestPki {
  const ca = issue({ commonName: 'nix-reapi-proxy test CA', ca: true });
  const server = issue({ commonName: 'localhost', ca: false, issuer: ca });
  const client = issue({ commonName: 'test client', ca: false, issuer: ca });
  const rogueCa = issue({ commonName: 'rogue CA', ca: true });
  const rogueClient = issue({ commonName: 'rogue client', ca: false, issuer: rogueCa });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'passthrough-pki-'));
  const write = (file: string, text: string): string => {
    const full = path.join(dir, file);
    writeFileSync(full, text, { mode: 0o600 });
    return full;
  };
  return {
    dir,
    files: {
      ca: write('ca.pem', ca.certPem),
      serverCert: write('server.pem', server.certPem),
      serverKey: write('server-key.pem', server.keyPem),
      clientCert: write('client.pem', client.certPem),
      clientKey: write('client-key.pem', client.keyPem),
      rogueCa: write('rogue-ca.pem', rogueCa.certPem),
      rogueClientCert: write('rogue-client.pem', rogueClient.certPem),
      rogueClientKey: write('rogue-client-key.pem', rogueClient.keyPem),
    },
    pem: {
      ca: Buffer.from(ca.certPem),
      serverCert: Buffer.from(server.certPem),
      serverKey: Buffer.from(server.keyPem),
      clientCert: Buffer.from(client.certPem),
      clientKey: Buffer.from(client.keyPem),
      rogueClientCert: Buffer.from(rogueClient.certPem),
      rogueClientKey: Buffer.from(rogueClient.keyPem),
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
