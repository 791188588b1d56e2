/**
 * The binary cache's HTTP(S) listener: the protocol stock Nix speaks to an
 * http(s):// store, routed by cache-routes.ts, each request identified by
 * cache-access.ts. Answers are plain text a person can read (Nix prints the
 * body of a failed upload). Bounded everywhere: URL length, header size and
 * count, body sizes (narinfo, NAR), idle uploads, connections; every error
 * is caught and answered, none reaches the process.
 */
import { createReadStream, readFileSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { CacheAccess, pushRefusal } from './cache-access';
import { routeOf, type CacheRoute } from './cache-routes';
import type { HashIndex } from './hash-index';
import { formatNarInfo, MAX_NARINFO_BYTES, parseNarInfo } from './narinfo';
import { PushError } from './push-error';
import type { PushImporter } from './push-importer';
import type { PushQuota } from './push-quota';
import type { SharedStoreReader } from './shared-store-reader';
import { UploadError, type StagingArea } from './staging-area';

export interface CacheServerOptions {
  host: string;
  port: number;
  tls?: { cert: string; key: string; clientCa?: string };
  priority: number;
  maxNarBytes: number;
  uploadIdleTimeoutMs: number;
  maxConnections: number;
  tokensOn: boolean;
}

export interface CacheServerParts {
  access: CacheAccess;
  staging: StagingArea;
  importer: PushImporter;
  reader: SharedStoreReader;
  index: HashIndex;
  quota: PushQuota;
  logger: Logger;
}

const TEXT = 'text/plain; charset=utf-8';
/** A refused upload up to this size is read and dropped rather than cut off. */
const DROP_BODY_MAX_BYTES = 8 * 1024 * 1024;

export class CacheServer {
  private readonly server: Server;
  private readonly logger: Logger;

  constructor(
    private readonly o: CacheServerOptions,
    private readonly parts: CacheServerParts,
  ) {
    this.logger = parts.logger;
    const handler = (req: IncomingMessage, res: ServerResponse, expectsContinue = false): void => {
      this.handle(req, res, expectsContinue).catch((err: unknown) => {
        this.logger.error(
          { err: (err as Error).message, url: req.url?.slice(0, 200) },
          'binary cache request failed unexpectedly',
        );
        this.answer(res, 500, `the binary cache failed: ${(err as Error).message}`);
      });
    };
    this.server = o.tls
      ? createHttpsServer(
          {
            cert: readFileSync(o.tls.cert),
            key: readFileSync(o.tls.key),
            ...(o.tls.clientCa
              ? { ca: readFileSync(o.tls.clientCa), requestCert: true, rejectUnauthorized: true }
              : {}),
          },
          handler,
        )
      : createHttpServer(handler);
    // curl sends large uploads with `Expect: 100-continue`: answer it only once the upload is allowed,
    // so a refused upload's body is never sent.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => handler(req, res, true));
    // Uploads are timed by their own idle timer (a large NAR may take long); headers must arrive promptly.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = 30_000;
    this.server.keepAliveTimeout = 5_000;
    this.server.maxHeadersCount = 64;
    this.server.maxConnections = o.maxConnections;
    this.server.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  async listen(): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.o.port, this.o.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse, expectsContinue: boolean): Promise<void> {
    const method = req.method ?? 'GET';
    const route = routeOf(method, req.url ?? '');
    if (route.kind === 'refused') return this.refuse(req, res, route.status, route.message);
    const socket = req.socket as TLSSocket;
    const subject = this.o.tls?.clientCa && socket.authorized ? certificateCn(socket) : undefined;
    const access = this.parts.access.identify({
      authorization: req.headers.authorization,
      certificateSubject: subject,
      address: req.socket.remoteAddress ?? 'unknown',
    });
    if (!access.ok) {
      if (access.status === 401) res.setHeader('WWW-Authenticate', 'Basic realm="nix-reapi-proxy"');
      return this.refuse(req, res, access.status, access.message);
    }
    if (method === 'PUT') {
      if (access.push === undefined) return this.refuse(req, res, 403, pushRefusal(access.client, this.o.tokensOn));
      return this.put(req, res, route, { client: access.client, right: access.push }, expectsContinue);
    }
    req.resume();
    switch (route.kind) {
      case 'cache-info':
        return this.answer(
          res,
          200,
          `StoreDir: /nix/store\nWantMassQuery: 1\nPriority: ${this.o.priority}\n`,
          'text/x-nix-cache-info',
          method === 'HEAD',
        );
      case 'narinfo':
        return this.getNarInfo(res, route.hash, method === 'HEAD');
      case 'served-nar':
        return this.getNar(res, route.hash, method === 'HEAD');
      case 'pushed-nar': {
        const staged = this.parts.staging.get(route.fileName);
        if (!staged || staged.file === '') return this.answer(res, 404, `nar/${route.fileName} is not staged`);
        if (method === 'HEAD') return this.answer(res, 200, '', 'application/x-nix-nar', true, staged.size);
        return this.sendFile(res, staged.file, staged.size);
      }
    }
  }

  private async getNarInfo(res: ServerResponse, hash: string, head: boolean): Promise<void> {
    // Accepted and being imported: present in this cache (Nix checks a closure's references are here before pushing a path).
    const pending = this.parts.importer.pendingNarInfo(hash);
    if (pending) return this.answer(res, 200, formatNarInfo(pending), 'text/x-nix-narinfo', head);
    const path = await this.parts.index.lookup(hash);
    const info = path === undefined ? undefined : await this.parts.reader.narInfo(path);
    if (!info || path === undefined)
      return this.answer(res, 404, `no path with hash ${hash} is valid on the shared store`);
    this.parts.importer.noteValid(path);
    this.answer(res, 200, formatNarInfo(info), 'text/x-nix-narinfo', head);
  }

  /** A staged NAR (of a path being imported) to a substituting client; the open file outlives its removal. */
  private async sendFile(res: ServerResponse, file: string, size: number): Promise<void> {
    let stream;
    try {
      stream = createReadStream(file);
      await new Promise<void>((resolve, reject) => {
        stream!.once('open', () => resolve());
        stream!.once('error', reject);
      });
    } catch {
      return this.answer(
        res,
        404,
        'the NAR was imported and removed from staging meanwhile; ask for the narinfo again',
      );
    }
    res.writeHead(200, { 'Content-Type': 'application/x-nix-nar', 'Content-Length': String(size) });
    try {
      await pipeline(stream, res);
    } catch (err) {
      this.logger.warn({ file, err: (err as Error).message }, 'staged NAR download cut off');
    }
  }

  private async getNar(res: ServerResponse, hash: string, head: boolean): Promise<void> {
    const path = await this.parts.index.lookup(hash);
    const info = path === undefined ? undefined : await this.parts.reader.narInfo(path);
    if (!info || path === undefined)
      return this.answer(res, 404, `no path with hash ${hash} is valid on the shared store`);
    res.writeHead(200, { 'Content-Type': 'application/x-nix-nar', 'Content-Length': String(info.narSize) });
    if (head) return void res.end();
    const aborted = new AbortController();
    res.once('close', () => aborted.abort());
    try {
      await this.parts.reader.dumpPath(path, res, aborted.signal);
      res.end();
    } catch (err) {
      this.logger.warn({ path, err: (err as Error).message }, 'NAR download cut off');
      res.destroy();
    }
  }

  private async put(
    req: IncomingMessage,
    res: ServerResponse,
    route: CacheRoute,
    pusher: { client: string; right: 'push' | 'push-unsigned' },
    expectsContinue: boolean,
  ): Promise<void> {
    const proceed = (): void => {
      if (expectsContinue) res.writeContinue();
    };
    const lengthHeader = req.headers['content-length'];
    if (lengthHeader === undefined || !/^\d{1,15}$/.test(lengthHeader)) {
      return this.refuse(req, res, 411, 'uploads must state their Content-Length');
    }
    const length = Number(lengthHeader);
    if (route.kind === 'pushed-nar') {
      if (length > this.o.maxNarBytes) {
        return this.refuse(
          req,
          res,
          413,
          `nar/${route.fileName} is ${length} bytes, more than cacheMaxNarBytes (${this.o.maxNarBytes})`,
        );
      }
      const noRoom = this.parts.staging.get(route.fileName) ? undefined : this.parts.staging.roomProblem(length);
      if (noRoom) return this.refuse(req, res, noRoom.status, noRoom.message, pusher.client);
      const reservation = this.parts.quota.reserve(pusher.client, length);
      if ('problem' in reservation) return this.refuse(req, res, 429, reservation.problem, pusher.client);
      proceed();
      try {
        const staged = await this.parts.staging.receive(
          route.fileName,
          route.fileHash,
          req,
          length,
          this.o.uploadIdleTimeoutMs,
        );
        this.logger.debug({ client: pusher.client, file: route.fileName, bytes: staged.size }, 'NAR staged');
        return this.answer(res, 200, `nar/${route.fileName} staged\n`);
      } catch (err) {
        if (err instanceof UploadError) {
          if (err.status === 507) reservation.settle(0);
          return this.refuse(req, res, err.status, err.message, pusher.client);
        }
        throw err;
      }
    }
    if (route.kind !== 'narinfo') return this.refuse(req, res, 405, 'only narinfo and NAR files can be uploaded');
    if (length > MAX_NARINFO_BYTES)
      return this.refuse(req, res, 413, `the narinfo is ${length} bytes, more than the ${MAX_NARINFO_BYTES} allowed`);
    let text: string;
    proceed();
    try {
      text = await readSmallBody(req, length, this.o.uploadIdleTimeoutMs);
    } catch (err) {
      return this.refuse(req, res, 400, `the narinfo upload failed: ${(err as Error).message}`, pusher.client);
    }
    const parsed = parseNarInfo(text);
    if (!parsed.ok)
      return this.refuse(req, res, 400, `/${route.hash}.narinfo was not accepted: ${parsed.problem}`, pusher.client);
    const info = parsed.info;
    if (info.storePath.slice('/nix/store/'.length, '/nix/store/'.length + 32) !== route.hash) {
      return this.refuse(
        req,
        res,
        400,
        `/${route.hash}.narinfo was not accepted: its StorePath ${info.storePath} has a different hash than the URL`,
        pusher.client,
      );
    }
    try {
      const result = await this.parts.importer.push(info, pusher);
      this.logger.info({ client: pusher.client, path: info.storePath, accepted: result.accepted }, 'push accepted');
      return this.answer(res, 200, `${result.message}\n`);
    } catch (err) {
      if (err instanceof PushError) return this.refuse(req, res, err.status, err.message, pusher.client);
      throw err;
    }
  }

  private refuse(req: IncomingMessage, res: ServerResponse, status: number, message: string, client?: string): void {
    this.logger.info(
      { method: req.method, url: req.url?.slice(0, 200), status, client, why: message.slice(0, 500) },
      'binary cache request refused',
    );
    if (!req.complete) this.dropBody(req, res);
    this.answer(res, status, `${message}\n`);
  }

  /**
   * A refused upload's body: a small one the client is sending anyway is read
   * and dropped (closing on it would reset the connection under the client's
   * write, and it would never see the answer); a large one, or one the client
   * holds back for `100 Continue`, is not read, and the connection closes
   * after the answer.
   */
  private dropBody(req: IncomingMessage, res: ServerResponse): void {
    const announced = Number(req.headers['content-length']);
    if (req.headers.expect !== undefined || !(announced <= DROP_BODY_MAX_BYTES)) {
      res.setHeader('Connection', 'close');
      return;
    }
    let idle = setTimeout(() => req.socket.destroy(), this.o.uploadIdleTimeoutMs);
    req.on('data', () => {
      clearTimeout(idle);
      idle = setTimeout(() => req.socket.destroy(), this.o.uploadIdleTimeoutMs);
    });
    req.once('close', () => clearTimeout(idle));
    req.resume();
  }

  private answer(res: ServerResponse, status: number, body: string, type = TEXT, head = false, length?: number): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const bytes = Buffer.from(body, 'utf8');
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': String(length ?? bytes.length) });
    res.end(head ? undefined : bytes);
  }
}

function certificateCn(socket: TLSSocket): string | undefined {
  const cn = socket.getPeerCertificate?.()?.subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
}

/** Reads a body of exactly `length` bytes (already bounded by the caller), or rejects. */
function readSmallBody(req: IncomingMessage, length: number, idleMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let got = 0;
    let timer = setTimeout(() => fail(new Error(`it sent nothing for ${idleMs} ms`)), idleMs);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      req.destroy();
      reject(err);
    };
    req.on('data', (chunk: Buffer) => {
      got += chunk.length;
      if (got > length) return fail(new Error('the body is longer than its Content-Length'));
      chunks.push(chunk);
      clearTimeout(timer);
      timer = setTimeout(() => fail(new Error(`it sent nothing for ${idleMs} ms`)), idleMs);
    });
    req.on('end', () => {
      clearTimeout(timer);
      if (got !== length) reject(new Error(`it ended after ${got} of ${length} bytes`));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (err) => fail(err));
  });
}
