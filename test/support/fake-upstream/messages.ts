import protobuf from 'protobufjs';
import { TYPE_URL_PREFIX, messageType } from '../../../src/reapi/protos';

/** Proto helpers for the fake upstream: decode to plain objects (int64 as number), encode from them. */

const RE = 'build.bazel.remote.execution.v2';
const ASSET = 'build.bazel.remote.asset.v1';

export const MSG = {
  Digest: `${RE}.Digest`,
  ExecuteRequest: `${RE}.ExecuteRequest`,
  ExecuteResponse: `${RE}.ExecuteResponse`,
  ExecuteOperationMetadata: `${RE}.ExecuteOperationMetadata`,
  WaitExecutionRequest: `${RE}.WaitExecutionRequest`,
  ActionResult: `${RE}.ActionResult`,
  GetActionResultRequest: `${RE}.GetActionResultRequest`,
  UpdateActionResultRequest: `${RE}.UpdateActionResultRequest`,
  FindMissingBlobsRequest: `${RE}.FindMissingBlobsRequest`,
  FindMissingBlobsResponse: `${RE}.FindMissingBlobsResponse`,
  BatchUpdateBlobsRequest: `${RE}.BatchUpdateBlobsRequest`,
  BatchUpdateBlobsResponse: `${RE}.BatchUpdateBlobsResponse`,
  BatchReadBlobsRequest: `${RE}.BatchReadBlobsRequest`,
  BatchReadBlobsResponse: `${RE}.BatchReadBlobsResponse`,
  GetTreeRequest: `${RE}.GetTreeRequest`,
  Directory: `${RE}.Directory`,
  GetCapabilitiesRequest: `${RE}.GetCapabilitiesRequest`,
  ServerCapabilities: `${RE}.ServerCapabilities`,
  ReadRequest: 'google.bytestream.ReadRequest',
  ReadResponse: 'google.bytestream.ReadResponse',
  WriteRequest: 'google.bytestream.WriteRequest',
  WriteResponse: 'google.bytestream.WriteResponse',
  QueryWriteStatusRequest: 'google.bytestream.QueryWriteStatusRequest',
  QueryWriteStatusResponse: 'google.bytestream.QueryWriteStatusResponse',
  Operation: 'google.longrunning.Operation',
  GetOperationRequest: 'google.longrunning.GetOperationRequest',
  ListOperationsRequest: 'google.longrunning.ListOperationsRequest',
  ListOperationsResponse: 'google.longrunning.ListOperationsResponse',
  DeleteOperationRequest: 'google.longrunning.DeleteOperationRequest',
  CancelOperationRequest: 'google.longrunning.CancelOperationRequest',
  WaitOperationRequest: 'google.longrunning.WaitOperationRequest',
  Status: 'google.rpc.Status',
  PreconditionFailure: 'google.rpc.PreconditionFailure',
  FetchBlobRequest: `${ASSET}.FetchBlobRequest`,
  FetchBlobResponse: `${ASSET}.FetchBlobResponse`,
  FetchDirectoryRequest: `${ASSET}.FetchDirectoryRequest`,
  FetchDirectoryResponse: `${ASSET}.FetchDirectoryResponse`,
  PushBlobRequest: `${ASSET}.PushBlobRequest`,
  PushDirectoryRequest: `${ASSET}.PushDirectoryRequest`,
} as const;

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

export function decode(typeName: string, bytes: Uint8Array): Obj {
  const type = messageType(typeName);
  return type.toObject(type.decode(bytes), { longs: Number, enums: Number, bytes: Buffer }) as Obj;
}

export function encode(typeName: string, value: Obj): Buffer {
  const type = messageType(typeName);
  const problem = type.verify(value);
  if (problem) throw new Error(`fake upstream: bad ${typeName}: ${problem}`);
  return Buffer.from(type.encode(type.fromObject(value)).finish());
}

/** A google.protobuf.Any object wrapping `value` of `typeName`. */
export function any(typeName: string, value: Obj): Obj {
  return { typeUrl: TYPE_URL_PREFIX + typeName, value: encode(typeName, value) };
}

/** An encoded google.rpc.Status, for grpc-status-details-bin. */
export function statusDetails(code: number, message: string, details: Obj[] = []): Buffer {
  return encode(MSG.Status, { code, message, details });
}

/** Raw bytes of the first length-delimited field `field` of `message`, without decoding it. */
export function rawField(message: Uint8Array, field: number): Buffer | undefined {
  const reader = protobuf.Reader.create(message);
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    if (tag >>> 3 === field && (tag & 7) === 2) return Buffer.from(reader.bytes());
    reader.skipType(tag & 7);
  }
  return undefined;
}

/** Appends already-encoded sub-messages as field `field`, keeping their bytes exactly. */
export function writeRawMessages(
  writer: protobuf.Writer,
  field: number,
  messages: readonly Uint8Array[],
): protobuf.Writer {
  for (const message of messages) writer.uint32((field << 3) | 2).bytes(message);
  return writer;
}
