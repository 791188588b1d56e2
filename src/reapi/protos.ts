import { existsSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';

/** Directory of our own .proto files, found from this module whether run from src/ or dist/src/. */
export function protosDir(): string {
  let dir = __dirname;
  for (let i = 0; i < 6; i++) {
    const candidate = path.join(dir, 'protos');
    if (existsSync(path.join(candidate, 'build', 'bazel', 'remote', 'execution', 'v2'))) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error(`cannot find the protos/ directory above ${__dirname}`);
}

/** Directory holding google/{rpc,longrunning,bytestream,protobuf}/*.proto. */
export function googleProtosDir(): string {
  return path.dirname(require.resolve('google-proto-files/package.json'));
}

export const PROTO_FILES = [
  'build/bazel/remote/execution/v2/remote_execution.proto',
  'build/bazel/remote/asset/v1/remote_asset.proto',
  'grpc/health/v1/health.proto',
  'google/bytestream/bytestream.proto',
  'google/longrunning/operations.proto',
  'google/rpc/status.proto',
  'google/rpc/error_details.proto',
];

let cached: protobuf.Root | undefined;

/** The protobufjs Root with every message the proxy and its tests speak. Loaded once, synchronously. */
export function protoRoot(): protobuf.Root {
  if (cached) return cached;
  const ours = protosDir();
  const google = googleProtosDir();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    const mine = path.join(ours, target);
    return existsSync(mine) ? mine : path.join(google, target);
  };
  root.loadSync(PROTO_FILES, { keepCase: false });
  root.resolveAll();
  cached = root;
  return root;
}

const types = new Map<string, protobuf.Type>();

/** A message type by full name; looked up once (namespace lookups showed in per-Execute profiles). */
export function messageType(fullName: string): protobuf.Type {
  let type = types.get(fullName);
  if (type === undefined) {
    type = protoRoot().lookupType(fullName);
    types.set(fullName, type);
  }
  return type;
}

const V2 = 'build.bazel.remote.execution.v2';

/** Message types the proxy decodes or builds, by short name. */
export const T = {
  get Digest() {
    return messageType(`${V2}.Digest`);
  },
  get Action() {
    return messageType(`${V2}.Action`);
  },
  get Command() {
    return messageType(`${V2}.Command`);
  },
  get Directory() {
    return messageType(`${V2}.Directory`);
  },
  get ExecuteRequest() {
    return messageType(`${V2}.ExecuteRequest`);
  },
  get ExecuteResponse() {
    return messageType(`${V2}.ExecuteResponse`);
  },
  get ExecuteOperationMetadata() {
    return messageType(`${V2}.ExecuteOperationMetadata`);
  },
  get WaitExecutionRequest() {
    return messageType(`${V2}.WaitExecutionRequest`);
  },
  get BatchReadBlobsRequest() {
    return messageType(`${V2}.BatchReadBlobsRequest`);
  },
  get BatchReadBlobsResponse() {
    return messageType(`${V2}.BatchReadBlobsResponse`);
  },
  get GetTreeRequest() {
    return messageType(`${V2}.GetTreeRequest`);
  },
  get GetTreeResponse() {
    return messageType(`${V2}.GetTreeResponse`);
  },
  get GetCapabilitiesRequest() {
    return messageType(`${V2}.GetCapabilitiesRequest`);
  },
  get ServerCapabilities() {
    return messageType(`${V2}.ServerCapabilities`);
  },
  get Operation() {
    return messageType('google.longrunning.Operation');
  },
  get Any() {
    return messageType('google.protobuf.Any');
  },
  get Status() {
    return messageType('google.rpc.Status');
  },
  get PreconditionFailure() {
    return messageType('google.rpc.PreconditionFailure');
  },
  get RetryInfo() {
    return messageType('google.rpc.RetryInfo');
  },
  get ReadRequest() {
    return messageType('google.bytestream.ReadRequest');
  },
  get ReadResponse() {
    return messageType('google.bytestream.ReadResponse');
  },
  get HealthCheckRequest() {
    return messageType('grpc.health.v1.HealthCheckRequest');
  },
  get HealthCheckResponse() {
    return messageType('grpc.health.v1.HealthCheckResponse');
  },
};

export const TYPE_URL_PREFIX = 'type.googleapis.com/';
