import protobuf from 'protobufjs';
import type { Violation } from '../errors';
import { T, TYPE_URL_PREFIX } from '../reapi/protos';
import type { BlobDigest } from './digests';

/**
 * The google.longrunning.Operation messages and google.rpc.Status details the
 * proxy itself produces, and the little it reads of the upstream's. Pure.
 */

const V2 = 'build.bazel.remote.execution.v2';
export const EXECUTE_OPERATION_METADATA_URL = `${TYPE_URL_PREFIX}${V2}.ExecuteOperationMetadata`;
export const EXECUTE_RESPONSE_URL = `${TYPE_URL_PREFIX}${V2}.ExecuteResponse`;
export const PRECONDITION_FAILURE_URL = `${TYPE_URL_PREFIX}google.rpc.PreconditionFailure`;

export const Stage = { UNKNOWN: 0, CACHE_CHECK: 1, QUEUED: 2, EXECUTING: 3, COMPLETED: 4 } as const;

export interface RpcStatus {
  code: number;
  message: string;
  violations?: readonly Violation[];
}

/**
 * google.protobuf.Any as protobufjs builds it: its bundled well-known types keep
 * the proto field name `type_url` (not camelCase like the rest of our messages).
 */
export interface AnyObject {
  type_url: string;
  value: Uint8Array;
}

function metadataAny(stage: number, actionDigest: BlobDigest): AnyObject {
  return {
    type_url: EXECUTE_OPERATION_METADATA_URL,
    value: T.ExecuteOperationMetadata.encode({
      stage,
      actionDigest: { hash: actionDigest.hash, sizeBytes: actionDigest.sizeBytes },
    }).finish(),
  };
}

/** done=false, stage QUEUED: what the client sees while the proxy prepares the action. */
export function queuedOperation(name: string, actionDigest: BlobDigest): Buffer {
  return Buffer.from(
    T.Operation.encode({ name, metadata: metadataAny(Stage.QUEUED, actionDigest), done: false }).finish(),
  );
}

/**
 * done=true with an ExecuteResponse whose status says why the action did not
 * run. Operation.error stays unset (REAPI: errors of the action go in the
 * response); a non-OK ExecuteResponse.status is never cached by clients.
 */
export function finishedOperation(name: string, actionDigest: BlobDigest, status: RpcStatus): Buffer {
  const response = T.ExecuteResponse.encode({ status: statusObject(status), message: status.message }).finish();
  return Buffer.from(
    T.Operation.encode({
      name,
      metadata: metadataAny(Stage.COMPLETED, actionDigest),
      done: true,
      response: { type_url: EXECUTE_RESPONSE_URL, value: response } satisfies AnyObject,
    }).finish(),
  );
}

/** An encoded google.rpc.Status, for grpc-status-details-bin. */
export function encodeStatus(status: RpcStatus): Buffer {
  return Buffer.from(T.Status.encode(statusObject(status)).finish());
}

function statusObject(status: RpcStatus): { code: number; message: string; details: AnyObject[] } {
  const details =
    status.violations && status.violations.length > 0
      ? [
          {
            type_url: PRECONDITION_FAILURE_URL,
            value: T.PreconditionFailure.encode({ violations: status.violations.map((v) => ({ ...v })) }).finish(),
          },
        ]
      : [];
  return { code: status.code, message: status.message, details };
}

/**
 * Reads only `name` (1) and `done` (3) of an Operation, skipping everything
 * else unparsed; undefined when the bytes are not a well-formed message.
 */
export function operationHead(bytes: Uint8Array): { name: string; done: boolean } | undefined {
  const reader = protobuf.Reader.create(bytes);
  let name = '';
  let done = false;
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 1 && wire === 2) {
        // Read the length ourselves: protobufjs clamps a string that runs past the end.
        const length = reader.uint32();
        if (reader.pos + length > reader.len) return undefined;
        name = Buffer.from(reader.buf.buffer, reader.buf.byteOffset + reader.pos, length).toString('utf8');
        reader.pos += length;
      } else if (field === 3 && wire === 0) done = reader.bool();
      else reader.skipType(wire);
    }
  } catch {
    return undefined;
  }
  return { name, done };
}
