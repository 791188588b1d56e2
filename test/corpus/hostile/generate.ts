import { lengthDelimited, tag, writeVarint } from '../../../src/reapi/wire';

/**
 * The large members of the hostile-input corpus, generated (too big to keep as
 * files). Each builder writes into any CAS that stores a blob and returns its
 * digest, so the same inputs serve the fake upstream and in-memory tests. The
 * Directory, Command and Action bytes are encoded by hand with the wire
 * helpers: fast at this size, and able to say things protobufjs would refuse
 * to encode (invalid UTF-8 in a string field).
 */

export interface Digest {
  hash: string;
  sizeBytes: number;
}

export interface BlobSink {
  putBlob(data: Uint8Array): Digest;
}

const NIXBASE32 = '0123456789abcdfghijklmnpqrsvwxyz';

/** A valid-looking store path hash, distinct for each `i`. */
export function fakeHash(i: number, salt = 0): string {
  let x = BigInt(i) * 2654435761n + BigInt(salt) * 40503n + 1n;
  let out = '';
  for (let k = 0; k < 32; k++) {
    out += NIXBASE32[Number(x % 32n)];
    x = x / 32n + BigInt(k * 7 + 3);
  }
  return out;
}

export function fakeStorePath(i: number, name = 'pkg', salt = 0): string {
  return `/nix/store/${fakeHash(i, salt)}-${name}`;
}

function digestBytes(d: Digest): Buffer {
  return Buffer.concat([lengthDelimited(1, Buffer.from(d.hash)), tag(2, 0), writeVarint(d.sizeBytes)]);
}

export interface DirEntries {
  files?: Array<{ name: string | Uint8Array; digest: Digest }>;
  dirs?: Array<{ name: string | Uint8Array; digest: Digest }>;
  symlinks?: Array<{ name: string | Uint8Array; target: string | Uint8Array }>;
}

const bytesOf = (s: string | Uint8Array): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s));

/** Directory: files=1 (FileNode name=1 digest=2), directories=2 (DirectoryNode name=1 digest=2), symlinks=3 (name=1 target=2). */
export function directoryBlob(e: DirEntries): Buffer {
  const parts: Buffer[] = [];
  for (const f of e.files ?? []) parts.push(lengthDelimited(1, Buffer.concat([lengthDelimited(1, bytesOf(f.name)), lengthDelimited(2, digestBytes(f.digest))])));
  for (const d of e.dirs ?? []) parts.push(lengthDelimited(2, Buffer.concat([lengthDelimited(1, bytesOf(d.name)), lengthDelimited(2, digestBytes(d.digest))])));
  for (const s of e.symlinks ?? []) parts.push(lengthDelimited(3, Buffer.concat([lengthDelimited(1, bytesOf(s.name)), lengthDelimited(2, bytesOf(s.target))])));
  return Buffer.concat(parts);
}

/** Command: arguments=1, environment_variables=2 (name=1, value=2). Strings are raw bytes here. */
export function commandBlob(args: Array<string | Uint8Array>, env: Array<[string | Uint8Array, string | Uint8Array]> = []): Buffer {
  const parts = args.map((a) => lengthDelimited(1, bytesOf(a)));
  for (const [name, value] of env) parts.push(lengthDelimited(2, Buffer.concat([lengthDelimited(1, bytesOf(name)), lengthDelimited(2, bytesOf(value))])));
  return Buffer.concat(parts);
}

/** Action: command_digest=1, input_root_digest=2. */
export function actionBlob(command: Digest, inputRoot: Digest): Buffer {
  return Buffer.concat([lengthDelimited(1, digestBytes(command)), lengthDelimited(2, digestBytes(inputRoot))]);
}

export function emptyDirectory(cas: BlobSink): Digest {
  return cas.putBlob(Buffer.alloc(0));
}

/** A chain of `levels` directories, each holding the next as `d`. Returns the root. */
export function deepTree(cas: BlobSink, levels: number): Digest {
  let digest = emptyDirectory(cas);
  for (let i = 0; i < levels; i++) digest = cas.putBlob(directoryBlob({ dirs: [{ name: 'd', digest }] }));
  return digest;
}

/**
 * `dirs` distinct directories of `filesPerDir` files each under one root
 * (dirs * filesPerDir files in all). The files are tiny (never fetched by the
 * scanner) and share one digest; directory contents differ by name.
 */
export function wideTree(cas: BlobSink, dirs: number, filesPerDir: number): Digest {
  const file = cas.putBlob(Buffer.from('x'));
  const children: Array<{ name: string; digest: Digest }> = [];
  for (let d = 0; d < dirs; d++) {
    const files = Array.from({ length: filesPerDir }, (_, f) => ({ name: `f${d}_${f}`, digest: file }));
    children.push({ name: `d${d}`, digest: cas.putBlob(directoryBlob({ files })) });
  }
  return cas.putBlob(directoryBlob({ dirs: children }));
}

/**
 * A Merkle "zip bomb": level k holds `fanout` references to level k-1, so
 * `levels` small blobs describe fanout^levels files.
 */
export function zipBomb(cas: BlobSink, levels: number, fanout = 2): Digest {
  let digest = cas.putBlob(directoryBlob({ files: [{ name: 'leaf', digest: cas.putBlob(Buffer.from('x')) }] }));
  for (let i = 0; i < levels; i++) {
    const dirs = Array.from({ length: fanout }, (_, k) => ({ name: `c${k}`, digest }));
    digest = cas.putBlob(directoryBlob({ dirs }));
  }
  return digest;
}

/** `n` copies of '/nix/store/' and nothing else: every candidate fails at its first hash byte. */
export function prefixFlood(bytes: number): Buffer {
  const unit = Buffer.from('/nix/store/');
  const out = Buffer.alloc(bytes);
  for (let at = 0; at < bytes; at += unit.length) unit.copy(out, at, 0, Math.min(unit.length, bytes - at));
  return out;
}

/**
 * The scanner's most expensive input per byte: prefixes each followed by a
 * full valid hash and a name of 212 characters (one too many), so every
 * candidate is read to its end and then refused.
 */
export function nearMissFlood(bytes: number): Buffer {
  const unit = Buffer.from(`/nix/store/${fakeHash(1)}-${'n'.repeat(212)}`);
  const out = Buffer.alloc(bytes, 0x20);
  for (let at = 0; at + unit.length <= bytes; at += unit.length + 1) unit.copy(out, at);
  return out;
}

/** Store paths `from`..`from+count-1`, separated by spaces. */
export function distinctPaths(count: number, from = 0, salt = 0): string {
  return Array.from({ length: count }, (_, i) => fakeStorePath(from + i, 'p', salt)).join(' ');
}

/** `depth` nested group starts (wire type 3): a recursive skipper would overflow its stack. */
export function nestedGroups(depth: number): Buffer {
  return Buffer.alloc(depth, 0x0b);
}
