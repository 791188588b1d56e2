/**
 * Turns a gRPC path into bounded `service` and `method` label values. The
 * path comes from the client, and every distinct label value is a new series
 * kept for the life of the process, so only methods the proxy knows keep
 * their names; anything else is counted as service and method "other".
 * Pure.
 */

const KNOWN: Readonly<Record<string, readonly string[]>> = {
  'build.bazel.remote.execution.v2.Execution': ['Execute', 'WaitExecution'],
  'build.bazel.remote.execution.v2.ActionCache': ['GetActionResult', 'UpdateActionResult'],
  'build.bazel.remote.execution.v2.ContentAddressableStorage': [
    'FindMissingBlobs',
    'BatchUpdateBlobs',
    'BatchReadBlobs',
    'GetTree',
    'SplitBlob',
    'SpliceBlob',
  ],
  'build.bazel.remote.execution.v2.Capabilities': ['GetCapabilities'],
  'google.bytestream.ByteStream': ['Read', 'Write', 'QueryWriteStatus'],
  'google.longrunning.Operations': [
    'ListOperations',
    'GetOperation',
    'DeleteOperation',
    'CancelOperation',
    'WaitOperation',
  ],
  'build.bazel.remote.asset.v1.Fetch': ['FetchBlob', 'FetchDirectory'],
  'build.bazel.remote.asset.v1.Push': ['PushBlob', 'PushDirectory'],
  'grpc.health.v1.Health': ['Check', 'Watch'],
};

const KNOWN_PATHS: ReadonlySet<string> = new Set(
  Object.entries(KNOWN).flatMap(([service, methods]) => methods.map((m) => `/${service}/${m}`)),
);

export const OTHER = 'other';

export interface MethodLabels {
  service: string;
  method: string;
}

export function methodLabels(path: string): MethodLabels {
  if (!KNOWN_PATHS.has(path)) return { service: OTHER, method: OTHER };
  const slash = path.lastIndexOf('/');
  return { service: path.slice(1, slash), method: path.slice(slash + 1) };
}
