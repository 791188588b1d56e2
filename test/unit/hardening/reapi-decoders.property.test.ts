import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ProxyError } from '../../../src/errors';
import { clampMaxBatchSize } from '../../../src/passthrough/capabilities-clamp';
import { FRAME_HEADER_BYTES, FrameDecoder, encodeFrame, framePayload } from '../../../src/rpc/grpc-frame';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { decodeStrict, wireFormProblem } from '../../../src/reapi/strict-wire';
import { readVarint, wireFields, writeVarint } from '../../../src/reapi/wire';
import { nestedGroups } from '../../corpus/hostile/generate';

/**
 * Properties of the byte-level decoders the proxy runs on client and upstream
 * data: gRPC framing, the protobuf wire walker, the strict wire-form check
 * and the Capabilities clamp. Each must either answer correctly or fail with
 * a clear error, on any input, without buffering what a header announces.
 */

const BAD_MESSAGES = (
  JSON.parse(readFileSync(join(__dirname, '..', '..', 'corpus', 'hostile', 'protobuf-messages.json'), 'utf8')) as {
    cases: Array<{ name: string; hex: string }>;
  }
).cases;

const bytesArb = fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a));

/** Splits `buf` into chunks at the given cut points. */
function chunked(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

// Messages protobufjs itself encodes: the strict check must accept every one.
const digestArb = fc.record({
  hash: fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: 64, maxLength: 64 }),
  sizeBytes: fc.nat(),
});
const textArb = fc.string({ unit: 'binary', maxLength: 20 });
const propertyArb = fc.record({ name: textArb, value: textArb });
const commandArb = fc.record(
  {
    arguments: fc.array(textArb, { maxLength: 6 }),
    environmentVariables: fc.array(propertyArb, { maxLength: 4 }),
    outputFiles: fc.array(textArb, { maxLength: 3 }),
    outputPaths: fc.array(textArb, { maxLength: 3 }),
    platform: fc.record({ properties: fc.array(propertyArb, { maxLength: 3 }) }),
    workingDirectory: textArb,
  },
  { requiredKeys: [] },
);
const actionArb = fc.record(
  {
    commandDigest: digestArb,
    inputRootDigest: digestArb,
    timeout: fc.record({ seconds: fc.nat(), nanos: fc.nat({ max: 999_999_999 }) }),
    doNotCache: fc.boolean(),
    salt: fc.uint8Array({ maxLength: 8 }),
    platform: fc.record({ properties: fc.array(propertyArb, { maxLength: 3 }) }),
  },
  { requiredKeys: [] },
);
const directoryArb = fc.record(
  {
    files: fc.array(fc.record({ name: textArb, digest: digestArb, isExecutable: fc.boolean() }), { maxLength: 5 }),
    directories: fc.array(fc.record({ name: textArb, digest: digestArb }), { maxLength: 5 }),
    symlinks: fc.array(fc.record({ name: textArb, target: textArb }), { maxLength: 5 }),
  },
  { requiredKeys: [] },
);
const capabilitiesArb = fc.record({
  cacheCapabilities: fc.record(
    {
      digestFunctions: fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 4 }),
      maxBatchTotalSizeBytes: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 2 ** 40 })),
      symlinkAbsolutePathStrategy: fc.integer({ min: 0, max: 2 }),
    },
    { requiredKeys: [] },
  ),
  executionCapabilities: fc.record(
    { digestFunction: fc.integer({ min: 0, max: 9 }), execEnabled: fc.boolean() },
    { requiredKeys: [] },
  ),
  lowApiVersion: fc.record({ major: fc.nat(3), minor: fc.nat(9) }),
  highApiVersion: fc.record({ major: fc.nat(3), minor: fc.nat(9) }),
});

const encode = (type: keyof typeof T, value: object): Buffer =>
  Buffer.from(T[type].encode(T[type].fromObject(value)).finish());

describe('gRPC framing', () => {
  it('gives back the same messages however the byte stream is cut', () => {
    fc.assert(
      fc.property(fc.array(bytesArb, { maxLength: 5 }), fc.array(fc.nat(), { maxLength: 10 }), (messages, cuts) => {
        const decoder = new FrameDecoder(1024);
        const stream = Buffer.concat(messages.map((m) => encodeFrame(m)));
        const got = chunked(stream, cuts).flatMap((c) => decoder.push(c));
        expect(got.map((f) => Buffer.from(f.payload))).toEqual(messages);
        expect(decoder.pendingBytes).toBe(0);
      }),
    );
  });

  it('on arbitrary bytes: frames or RESOURCE_EXHAUSTED, and never holds a whole frame unreturned', () => {
    fc.assert(
      fc.property(fc.array(bytesArb, { maxLength: 6 }), fc.integer({ min: 0, max: 200 }), (chunks, max) => {
        const decoder = new FrameDecoder(max);
        for (const chunk of chunks) {
          try {
            for (const f of decoder.push(chunk)) expect(f.payload.length).toBeLessThanOrEqual(max);
          } catch (err) {
            expect(err).toBeInstanceOf(ProxyError);
            expect((err as ProxyError).code).toBe(Code.RESOURCE_EXHAUSTED);
            return;
          }
          expect(decoder.pendingBytes).toBeLessThan(FRAME_HEADER_BYTES + max);
        }
      }),
    );
  });

  it('refuses a frame announcing more than the limit as soon as its header arrives', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 32 - 1 }), fc.nat({ max: 1 << 20 }), (announced, max) => {
        fc.pre(announced > max);
        const header = Buffer.alloc(FRAME_HEADER_BYTES);
        header.writeUInt32BE(announced, 1);
        expect(() => new FrameDecoder(max).push(header)).toThrow(/exceeds the proxy's limit/);
      }),
    );
  });

  it('decompresses within the limit or fails INVALID_ARGUMENT / UNIMPLEMENTED, never beyond it', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          bytesArb,
          bytesArb.map((b) => gzipSync(b)),
        ),
        fc.constantFrom('gzip', 'deflate', 'snappy', undefined),
        fc.nat({ max: 400 }),
        (payload, encoding, max) => {
          try {
            const out = framePayload({ compressed: true, payload }, encoding, max);
            expect(out.length).toBeLessThanOrEqual(max);
          } catch (err) {
            expect(err).toBeInstanceOf(ProxyError);
            expect([Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED]).toContain((err as ProxyError).code);
          }
        },
      ),
    );
  });

  it('stops a gzip bomb at the limit', () => {
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(100 * 1024);
    expect(() => framePayload({ compressed: true, payload: bomb }, 'gzip', 4 * 1024 * 1024)).toThrow(ProxyError);
  });
});

describe('protobuf wire walker', () => {
  it('reads back every varint it writes', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        const bytes = writeVarint(n);
        expect(readVarint(bytes, 0)).toEqual({ value: n, next: bytes.length });
      }),
    );
  });

  it('on arbitrary bytes: throws an Error or yields contiguous, in-bounds fields covering the input', () => {
    fc.assert(
      fc.property(bytesArb, (buf) => {
        let fields;
        try {
          fields = [...wireFields(buf)];
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          return;
        }
        let pos = 0;
        for (const f of fields) {
          expect(f.start).toBe(pos);
          expect(f.valueStart).toBeGreaterThan(f.start);
          expect(f.end).toBeGreaterThanOrEqual(f.valueStart);
          expect(f.end).toBeLessThanOrEqual(buf.length);
          pos = f.end;
        }
        expect(pos).toBe(buf.length);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('strict wire-form check', () => {
  it.each([
    ['Command', commandArb],
    ['Action', actionArb],
    ['Directory', directoryArb],
  ] as const)('accepts every %s protobufjs encodes', (type, arb) => {
    fc.assert(
      fc.property(arb as fc.Arbitrary<object>, (value) => {
        expect(wireFormProblem(T[type], encode(type, value))).toBeUndefined();
      }),
      { numRuns: 500 },
    );
  });

  it('refuses every cut that is not at a field boundary', () => {
    fc.assert(
      fc.property(commandArb, fc.nat(), (value, at) => {
        const bytes = encode('Command', value);
        fc.pre(bytes.length > 0);
        const cut = at % bytes.length;
        const boundaries = new Set([...wireFields(bytes)].map((f) => f.start));
        const problem = wireFormProblem(T.Command, bytes.subarray(0, cut));
        if (boundaries.has(cut)) expect(problem).toBeUndefined();
        else expect(problem).toBeDefined();
      }),
      { numRuns: 1000 },
    );
  });

  it('on arbitrary bytes never throws; what it accepts protobufjs decodes', () => {
    fc.assert(
      fc.property(
        bytesArb,
        fc.constantFrom('Command', 'Action', 'Directory', 'ExecuteRequest') as fc.Arbitrary<'Command'>,
        (buf, type) => {
          if (wireFormProblem(T[type], buf) === undefined) expect(() => T[type].decode(buf)).not.toThrow();
        },
      ),
      { numRuns: 3000 },
    );
  });

  it.each(BAD_MESSAGES.map((c) => [c.name, c.hex]))(
    'hostile corpus: %s is refused as an Action with a reason',
    (_name, hex) => {
      expect(wireFormProblem(T.Action, Buffer.from(hex, 'hex'))).toMatch(/^Action/);
    },
  );

  it('refuses a million nested group starts without recursing', () => {
    expect(wireFormProblem(T.Directory, nestedGroups(1_000_000))).toMatch(/group/);
    expect(() => decodeStrict(T.Command, nestedGroups(1_000_000))).toThrow(/group/);
  });

  it('refuses messages nested deeper than the bound', () => {
    // Platform.properties.name nests twice; a bound of 1 allows only one level.
    const bytes = encode('Command', { platform: { properties: [{ name: 'a', value: 'b' }] } });
    expect(wireFormProblem(T.Command, bytes, 1)).toMatch(/nested too deeply/);
    expect(wireFormProblem(T.Command, bytes)).toBeUndefined();
  });
});

describe('Capabilities clamp', () => {
  it('caps max_batch_total_size_bytes at the limit (0 meaning unlimited) and leaves every other field as it was', () => {
    fc.assert(
      fc.property(capabilitiesArb, fc.integer({ min: 1024, max: 2 ** 31 - 1 }), (caps, limit) => {
        const input = encode('ServerCapabilities', caps);
        const output = clampMaxBatchSize(input, limit);
        const before = T.ServerCapabilities.toObject(T.ServerCapabilities.decode(input), {
          longs: Number,
          defaults: true,
        }) as {
          cacheCapabilities?: { maxBatchTotalSizeBytes: number };
        };
        const after = T.ServerCapabilities.toObject(T.ServerCapabilities.decode(output), {
          longs: Number,
          defaults: true,
        }) as typeof before;
        const current = before.cacheCapabilities?.maxBatchTotalSizeBytes ?? 0;
        if (before.cacheCapabilities === undefined) {
          expect(output).toBe(input);
          return;
        }
        expect(after.cacheCapabilities!.maxBatchTotalSizeBytes).toBe(current > 0 && current <= limit ? current : limit);
        expect({ ...after, cacheCapabilities: { ...after.cacheCapabilities, maxBatchTotalSizeBytes: 0 } }).toEqual({
          ...before,
          cacheCapabilities: { ...before.cacheCapabilities, maxBatchTotalSizeBytes: 0 },
        });
        expect(clampMaxBatchSize(output, limit).equals(output)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('on arbitrary bytes returns a Buffer or throws an Error (the forwarder then passes the bytes on as they are)', () => {
    fc.assert(
      fc.property(bytesArb, (buf) => {
        try {
          expect(Buffer.isBuffer(clampMaxBatchSize(buf, 4096))).toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
