/**
 * Speaking to the proxy's binary cache as a hand-written client would, for
 * tests of what stock Nix never sends: NARs made with `nix-store --dump`,
 * narinfos written and signed here, raw requests over a socket for
 * truncated and stalled uploads.
 */
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { formatNarInfo, narInfoFingerprint, type NarInfo } from '../../src/cache/narinfo';
import { signFingerprint } from '../../src/cache/narinfo-signature';
import { encodeNixBase32 } from '../../src/cache/nix-base32';
import { runBytes } from './nix-run-bytes';

export interface PreparedPush {
  info: NarInfo;
  nar: Buffer;
  fileName: string;
  hash: string;
}

/** The uncompressed NAR of a host-store path and the narinfo Nix would write for it (unsigned). */
export async function preparePush(path: string, references: readonly string[]): Promise<PreparedPush> {
  const nar = await runBytes('nix-store', ['--dump', path]);
  const b32 = encodeNixBase32(createHash('sha256').update(nar).digest());
  const fileName = `${b32}.nar`;
  const info: NarInfo = {
    storePath: path,
    url: `nar/${fileName}`,
    compression: 'none',
    fileHash: `sha256:${b32}`,
    fileSize: nar.length,
    narHash: `sha256:${b32}`,
    narSize: nar.length,
    references: [...references].sort(),
    sigs: [],
  };
  return { info, nar, fileName, hash: path.slice('/nix/store/'.length, '/nix/store/'.length + 32) };
}

export function signed(info: NarInfo, secretKey: string): NarInfo {
  return { ...info, sigs: [signFingerprint(narInfoFingerprint(info), secretKey)] };
}

export interface Answer {
  status: number;
  body: string;
}

export async function request(
  url: string,
  method: string,
  token: string | undefined,
  body?: Buffer | string,
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' ? body : new Uint8Array(body),
  });
  return { status: res.status, body: await res.text() };
}

export async function putNar(base: string, p: PreparedPush, token: string, bytes: Buffer = p.nar): Promise<Answer> {
  return request(`${base}/${p.info.url}`, 'PUT', token, bytes);
}

export async function putNarInfo(base: string, hash: string, text: string, token: string): Promise<Answer> {
  return request(`${base}/${hash}.narinfo`, 'PUT', token, text);
}

export function narInfoText(info: NarInfo): string {
  return formatNarInfo(info);
}

/**
 * Starts a PUT announcing `announced` bytes and sends only `sent` of them;
 * the socket stays open until the caller ends it. Resolves the raw response
 * text once the server answers or closes.
 */
export function partialPut(
  base: string,
  urlPath: string,
  token: string,
  announced: number,
  sent: Buffer,
): { socket: Socket; answer: Promise<string> } {
  const { hostname, port } = new URL(base);
  const socket = connect(Number(port), hostname);
  socket.write(
    `PUT ${urlPath} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${announced}\r\n` +
      'Content-Type: application/x-nix-nar\r\n\r\n',
  );
  socket.write(sent);
  const answer = new Promise<string>((resolve) => {
    let text = '';
    socket.on('data', (d) => {
      text += d.toString();
      // One answer is all a caller waits for: a complete head and its announced body.
      const m = /\r\n\r\n/.exec(text);
      const len = /content-length: (\d+)/i.exec(text);
      if (m && len && text.length >= m.index + 4 + Number(len[1])) socket.end();
    });
    socket.on('close', () => resolve(text));
    socket.on('error', () => resolve(text));
  });
  return { socket, answer };
}

/** One request with `rawPath` sent exactly as given (fetch would normalise dot segments); resolves the status. */
export async function rawPutStatus(base: string, rawPath: string, token: string, body = 'x'): Promise<number> {
  const { socket, answer } = partialPut(base, rawPath, token, body.length, Buffer.from(body));
  const text = await answer;
  socket.destroy();
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
}
