import { createHash } from 'node:crypto';
import { FrameDecoder } from '../../src/rpc/grpc-frame';
import { Code } from '../../src/reapi/grpc-status';
import { fields, framePrefix, lenPrefix, varintField } from '../common/grpc-wire';
import type { Handler } from './cas-handlers';
import { readUnary, respondError, respondMessage } from './grpc-responder';
import { MAX_ARBITRARY_BLOB_BYTES, matchesPattern, type MemoryCas } from './memory-cas';

/** Data bytes per ReadResponse message (what many CAS servers use by default). */
export const READ_CHUNK_BYTES = 64 * 1024;
const MAX_WRITE_MESSAGE_BYTES = 4 * 1024 * 1024;

const BLOB_NAME = /(?:^|\/)blobs\/([0-9a-f]{64})\/(\d{1,15})$/;
const UPLOAD_NAME = /(?:^|\/)uploads\/[^/]+\/blobs\/([0-9a-f]{64})\/(\d{1,15})(?:\/.*)?$/;

/** ByteStream.Read: streams the blob in READ_CHUNK_BYTES messages, waiting for 'drain' (backpressure). */
export function read(cas: MemoryCas): Handler {
  return (stream) =>
    readUnary(stream, (req) => {
      let name = '';
      let offset = 0;
      let limit = 0;
      for (const f of fields(req)) {
        if (f.field === 1 && f.bytes) name = f.bytes.toString('utf8');
        else if (f.field === 2) offset = f.value;
        else if (f.field === 3) limit = f.value;
      }
      const m = BLOB_NAME.exec(name);
      if (!m) return respondError(stream, Code.INVALID_ARGUMENT, `bad resource name '${name}'`);
      const blob = cas.get(`${m[1]}/${m[2]}`);
      if (!blob) return respondError(stream, Code.NOT_FOUND, `blob ${m[1]}/${m[2]} not found`);
      if (offset > blob.size) return respondError(stream, Code.OUT_OF_RANGE, 'read_offset past the end');
      const end = limit > 0 ? Math.min(blob.size, offset + limit) : blob.size;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => {
        if (!stream.destroyed) stream.sendTrailers({ 'grpc-status': '0' });
      });
      let pos = offset;
      const pump = (): void => {
        while (pos < end) {
          if (stream.destroyed || stream.closed) return;
          const n = Math.min(READ_CHUNK_BYTES, end - pos);
          const prefix = lenPrefix(10, n);
          stream.write(Buffer.concat([framePrefix(prefix.length + n), prefix]));
          const more = stream.write(cas.read(blob, pos, n));
          pos += n;
          if (!more) {
            stream.once('drain', pump);
            return;
          }
        }
        stream.end();
      };
      pump();
    });
}

/**
 * ByteStream.Write: checks offsets, size and SHA-256 as a CAS must. Blobs up to
 * MAX_ARBITRARY_BLOB_BYTES are kept; larger ones only when they are the bench
 * pattern (kept as a size), so 1 GiB uploads cost the upstream no memory.
 */
export function write(cas: MemoryCas): Handler {
  return (stream) => {
    const decoder = new FrameDecoder(MAX_WRITE_MESSAGE_BYTES);
    const hash = createHash('sha256');
    let key: string | undefined;
    let size = 0;
    let received = 0;
    let kept: Buffer[] | undefined = [];
    let finished = false;
    let failed = false;
    const fail = (code: number, message: string): void => {
      failed = true;
      respondError(stream, code, message);
      stream.resume();
    };
    stream.on('data', (chunk: Buffer) => {
      if (failed) return;
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        return fail(Code.RESOURCE_EXHAUSTED, (err as Error).message);
      }
      for (const f of frames) {
        if (f.compressed) return fail(Code.UNIMPLEMENTED, 'compressed messages are not supported');
        if (finished) return fail(Code.INVALID_ARGUMENT, 'message after finish_write');
        let data: Buffer | undefined;
        let offset = 0;
        for (const field of fields(f.payload)) {
          if (field.field === 1 && field.bytes && key === undefined) {
            const m = UPLOAD_NAME.exec(field.bytes.toString('utf8'));
            if (!m) return fail(Code.INVALID_ARGUMENT, `bad resource name '${field.bytes.toString('utf8')}'`);
            key = `${m[1]}/${m[2]}`;
            size = Number(m[2]);
          } else if (field.field === 2) offset = field.value;
          else if (field.field === 3) finished = field.value !== 0;
          else if (field.field === 10) data = field.bytes;
        }
        if (key === undefined) return fail(Code.INVALID_ARGUMENT, 'the first WriteRequest must name the resource');
        if (offset !== received) return fail(Code.INVALID_ARGUMENT, `write_offset ${offset}, expected ${received}`);
        if (data && data.length > 0) {
          if (received + data.length > size) return fail(Code.INVALID_ARGUMENT, `more than ${size} bytes written`);
          hash.update(data);
          if (size > MAX_ARBITRARY_BLOB_BYTES) {
            if (!matchesPattern(data, received))
              return fail(
                Code.RESOURCE_EXHAUSTED,
                `blobs over ${MAX_ARBITRARY_BLOB_BYTES} bytes must be the bench pattern`,
              );
          } else kept!.push(Buffer.from(data));
          received += data.length;
        }
      }
    });
    stream.on('end', () => {
      if (failed) return;
      if (!finished || key === undefined)
        return respondError(stream, Code.INVALID_ARGUMENT, 'stream ended without finish_write');
      if (received !== size)
        return respondError(stream, Code.INVALID_ARGUMENT, `got ${received} bytes, the digest says ${size}`);
      if (`${hash.digest('hex')}/${size}` !== key)
        return respondError(stream, Code.INVALID_ARGUMENT, 'data does not match the digest');
      if (size > MAX_ARBITRARY_BLOB_BYTES) {
        cas.putPattern(key, size);
      } else if (!cas.put(key, Buffer.concat(kept!))) {
        return respondError(stream, Code.RESOURCE_EXHAUSTED, 'memory upstream is full');
      }
      kept = undefined;
      respondMessage(stream, varintField(1, size));
    });
    stream.on('error', () => {});
  };
}

export function queryWriteStatus(cas: MemoryCas): Handler {
  return (stream) =>
    readUnary(stream, (req) => {
      const name =
        fields(req)
          .find((f) => f.field === 1)
          ?.bytes?.toString('utf8') ?? '';
      const m = UPLOAD_NAME.exec(name);
      const blob = m ? cas.get(`${m[1]}/${m[2]}`) : undefined;
      if (!blob) return respondError(stream, Code.NOT_FOUND, 'no such upload');
      respondMessage(stream, Buffer.concat([varintField(1, blob.size), varintField(2, 1)]));
    });
}
