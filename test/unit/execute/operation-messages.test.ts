import { describe, expect, it } from 'vitest';
import { callStatusFor } from '../../../src/execute/call-status';
import { missingPathsStatus } from '../../../src/execute/missing-paths-status';
import {
  EXECUTE_OPERATION_METADATA_URL,
  EXECUTE_RESPONSE_URL,
  finishedOperation,
  operationHead,
  PRECONDITION_FAILURE_URL,
  queuedOperation,
  Stage,
} from '../../../src/execute/operation-messages';
import { isOurOperationName, newOperationName } from '../../../src/execute/operation-names';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { T } from '../../../src/reapi/protos';
import { NIX_STORE_PATH_VIOLATION } from '../../../src/store/closure-ensurer';
import { P, sha256Digest } from './fixtures';

type Any = { type_url: string; value: Uint8Array };
type StatusObj = { code: number; message: string; details: Any[] };

const ACTION = sha256Digest(Buffer.from('action'));

function decodeOperation(bytes: Uint8Array) {
  return T.Operation.toObject(T.Operation.decode(bytes), { longs: Number, defaults: true }) as {
    name: string;
    done: boolean;
    metadata: Any;
    response?: Any;
    error?: unknown;
  };
}

function decodeStatus(bytes: Uint8Array): StatusObj {
  return T.Status.toObject(T.Status.decode(bytes), { defaults: true }) as StatusObj;
}

function violationsOf(status: StatusObj) {
  expect(status.details).toHaveLength(1);
  expect(status.details[0]!.type_url).toBe(PRECONDITION_FAILURE_URL);
  return (
    T.PreconditionFailure.toObject(T.PreconditionFailure.decode(status.details[0]!.value)) as {
      violations: Array<{ type: string; subject: string; description: string }>;
    }
  ).violations;
}

describe('queuedOperation', () => {
  it('is not done, carries QUEUED metadata with the action digest, and no result', () => {
    const op = decodeOperation(queuedOperation('operations/nix-reapi-proxy/x', ACTION));
    expect(op.name).toBe('operations/nix-reapi-proxy/x');
    expect(op.done).toBe(false);
    expect(op.response).toBeUndefined();
    expect(op.error).toBeUndefined();
    expect(op.metadata.type_url).toBe(EXECUTE_OPERATION_METADATA_URL);
    expect(op.metadata.type_url).toBe('type.googleapis.com/build.bazel.remote.execution.v2.ExecuteOperationMetadata');
    const md = T.ExecuteOperationMetadata.toObject(T.ExecuteOperationMetadata.decode(op.metadata.value), {
      longs: Number,
    });
    expect(md).toEqual({ stage: Stage.QUEUED, actionDigest: { hash: ACTION.hash, sizeBytes: ACTION.sizeBytes } });
  });
});

describe('finishedOperation for missing store paths', () => {
  const ensurerError = new ProxyError(Code.FAILED_PRECONDITION, 'NIX_PATHS_UNAVAILABLE', 'paths unavailable', {
    violations: [
      {
        type: NIX_STORE_PATH_VIOLATION,
        subject: P.clang,
        description: 'no substituter has it (tried https://cache.example)',
      },
      { type: NIX_STORE_PATH_VIOLATION, subject: P.bash, description: 'signature not trusted' },
    ],
  });
  const references = new Map([[P.clang, 'argument 0']]);

  it('is done, with an ExecuteResponse whose status is FAILED_PRECONDITION naming each path, and no Operation.error', () => {
    const op = decodeOperation(finishedOperation('n', ACTION, missingPathsStatus(ensurerError, references)));
    expect(op.done).toBe(true);
    expect(op.error).toBeUndefined();
    expect(op.response!.type_url).toBe(EXECUTE_RESPONSE_URL);
    const response = T.ExecuteResponse.toObject(T.ExecuteResponse.decode(op.response!.value), { defaults: true }) as {
      status: StatusObj;
      message: string;
      result?: unknown;
    };
    expect(response.result ?? undefined).toBeUndefined();
    expect(response.status.code).toBe(Code.FAILED_PRECONDITION);
    expect(response.status.message).toContain(P.clang);
    expect(response.status.message).toContain('referenced by argument 0');
    expect(response.status.message).toContain('no substituter has it');
    expect(response.status.message).toContain(P.bash);
    expect(response.status.message).toContain('nix copy');
    expect(response.message).toBe(response.status.message);
    expect(violationsOf(response.status)).toEqual([
      {
        type: 'NIX_STORE_PATH',
        subject: P.clang,
        description: 'no substituter has it (tried https://cache.example) (referenced by argument 0)',
      },
      { type: 'NIX_STORE_PATH', subject: P.bash, description: 'signature not trusted' },
    ]);
    const md = T.ExecuteOperationMetadata.toObject(T.ExecuteOperationMetadata.decode(op.metadata.value)) as {
      stage: number;
    };
    expect(md.stage).toBe(Stage.COMPLETED);
  });

  it('lists at most ten paths in the message but every one as a violation', () => {
    const many = Array.from({ length: 12 }, (_, i) => ({
      type: NIX_STORE_PATH_VIOLATION,
      subject: `/nix/store/${String(i).padStart(32, '0')}-p${i}`,
      description: 'missing',
    }));
    const status = missingPathsStatus(
      new ProxyError(Code.FAILED_PRECONDITION, 'NIX_PATHS_UNAVAILABLE', 'x', { violations: many }),
      new Map(),
    );
    expect(status.message).toContain('12 Nix store paths');
    expect(status.message).toContain('...and 2 more');
    expect(status.violations).toHaveLength(12);
  });

  it('uses the ensurer message when it names no path', () => {
    const status = missingPathsStatus(
      new ProxyError(Code.FAILED_PRECONDITION, 'NIX_PATHS_UNAVAILABLE', 'store refused'),
      new Map(),
    );
    expect(status.message).toBe('store refused');
  });
});

describe('operationHead', () => {
  it.each<[string, Uint8Array, { name: string; done: boolean } | undefined]>([
    ['our queued op', queuedOperation('abc', ACTION), { name: 'abc', done: false }],
    ['a done op', finishedOperation('n', ACTION, { code: 9, message: 'x' }), { name: 'n', done: true }],
    ['an empty message', new Uint8Array(0), { name: '', done: false }],
    [
      'unknown fields are skipped',
      T.Operation.encode({ name: 'u', done: true, error: { code: 2, message: 'e' } }).finish(),
      { name: 'u', done: true },
    ],
    ['truncated bytes', queuedOperation('abc', ACTION).subarray(0, 3), undefined],
  ])('%s', (_name, bytes, expected) => {
    expect(operationHead(bytes)).toEqual(expected);
  });
});

describe('operation names', () => {
  it.each<[string, string, boolean]>([
    ['ours, empty instance', newOperationName(''), true],
    ['ours, with instance', newOperationName('main/x'), true],
    ['upstream uuid', '5b1bbd0a-2c57-4c41-9a34-7d5e9f1a3c11', false],
    ['upstream operations/ name', 'operations/5b1bbd0a-2c57-4c41-9a34-7d5e9f1a3c11', false],
    ['our prefix without a uuid', 'operations/nix-reapi-proxy/abc', false],
    ['our prefix as a longer segment', 'xoperations/nix-reapi-proxy/5b1bbd0a-2c57-4c41-9a34-7d5e9f1a3c11', false],
  ])('%s', (_name, name, ours) => {
    expect(isOurOperationName(name)).toBe(ours);
  });

  it('puts the instance name first', () => {
    expect(newOperationName('main', '5b1bbd0a-2c57-4c41-9a34-7d5e9f1a3c11')).toBe(
      'main/operations/nix-reapi-proxy/5b1bbd0a-2c57-4c41-9a34-7d5e9f1a3c11',
    );
  });
});

describe('callStatusFor', () => {
  it('puts MISSING violations in grpc-status-details-bin as google.rpc.Status', () => {
    const err = new ProxyError(Code.FAILED_PRECONDITION, 'MISSING_BLOBS', 'blobs missing', {
      violations: [{ type: 'MISSING', subject: `blobs/${ACTION.hash}/${ACTION.sizeBytes}`, description: 'not found' }],
    });
    const status = callStatusFor(err);
    expect(status.code).toBe(Code.FAILED_PRECONDITION);
    expect(status.message).toBe('blobs missing');
    const decoded = decodeStatus(status.details!);
    expect(decoded.code).toBe(Code.FAILED_PRECONDITION);
    expect(violationsOf(decoded)).toEqual([
      { type: 'MISSING', subject: `blobs/${ACTION.hash}/${ACTION.sizeBytes}`, description: 'not found' },
    ]);
  });

  it('has no details without violations', () => {
    expect(callStatusFor(new ProxyError(Code.UNAVAILABLE, 'X', 'down'))).toEqual({
      code: Code.UNAVAILABLE,
      message: 'down',
    });
  });

  it('keeps trailers small: long messages and many violations are cut', () => {
    const violations = Array.from({ length: 2000 }, (_, i) => ({
      type: 'MISSING',
      subject: `blobs/${String(i).padStart(64, '0')}/1`,
      description: 'not found in the CAS',
    }));
    const status = callStatusFor(
      new ProxyError(Code.FAILED_PRECONDITION, 'MISSING_BLOBS', 'm'.repeat(10_000), { violations }),
    );
    expect(status.message!.length).toBeLessThanOrEqual(2003);
    expect(status.details!.length).toBeLessThanOrEqual(3000 + 600);
    expect(violationsOf(decodeStatus(status.details!)).length).toBeGreaterThan(0);
  });
});
