import { describe, expect, it } from 'vitest';
import { methodLabels } from '../../../src/metrics/grpc-method-labels';

describe('methodLabels', () => {
  it.each([
    ['/build.bazel.remote.execution.v2.Execution/Execute', 'build.bazel.remote.execution.v2.Execution', 'Execute'],
    [
      '/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs',
      'build.bazel.remote.execution.v2.ContentAddressableStorage',
      'FindMissingBlobs',
    ],
    ['/google.bytestream.ByteStream/Write', 'google.bytestream.ByteStream', 'Write'],
    ['/google.longrunning.Operations/WaitOperation', 'google.longrunning.Operations', 'WaitOperation'],
    ['/grpc.health.v1.Health/Check', 'grpc.health.v1.Health', 'Check'],
    ['/build.bazel.remote.asset.v1.Fetch/FetchBlob', 'build.bazel.remote.asset.v1.Fetch', 'FetchBlob'],
  ])('keeps the names of the known method %s', (path, service, method) => {
    expect(methodLabels(path)).toEqual({ service, method });
  });

  it.each([
    ['an unknown method of a known service', '/build.bazel.remote.execution.v2.Execution/Execute2'],
    ['an unknown service', '/acme.Secret/Get'],
    ['a path without a method', '/build.bazel.remote.execution.v2.Execution'],
    ['a case variant', '/build.bazel.remote.execution.v2.execution/execute'],
    ['an empty path', ''],
    ['a path with a query', '/grpc.health.v1.Health/Check?x=1'],
  ])('counts %s as other', (_what, path) => {
    expect(methodLabels(path)).toEqual({ service: 'other', method: 'other' });
  });
});
