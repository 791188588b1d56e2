import { describe, expect, it } from 'vitest';
import { forwardableMetadata } from '../../../src/execute/client-metadata';

describe('forwardableMetadata', () => {
  const requestMetadata = Buffer.from([0x0a, 0x03, 0x01, 0x02, 0x03]);

  it('keeps application headers and decodes -bin values', () => {
    const pairs = forwardableMetadata({
      authorization: 'Bearer t',
      'build.bazel.remote.execution.v2.requestmetadata-bin': requestMetadata.toString('base64'),
      'x-tenant': ['a', 'b'],
    });
    expect(pairs).toEqual([
      ['authorization', 'Bearer t'],
      ['build.bazel.remote.execution.v2.requestmetadata-bin', requestMetadata],
      ['x-tenant', 'a'],
      ['x-tenant', 'b'],
    ]);
  });

  it.each([
    'grpc-timeout',
    'grpc-encoding',
    'grpc-accept-encoding',
    'content-type',
    'te',
    'user-agent',
    'content-length',
    ':authority',
    'connection',
  ])('drops the transport header %s', (key) => {
    expect(forwardableMetadata({ [key]: 'v', keep: 'yes' })).toEqual([['keep', 'yes']]);
  });

  it('splits comma-joined -bin values', () => {
    const a = Buffer.from('a');
    const b = Buffer.from('bb');
    expect(forwardableMetadata({ 'x-bin': `${a.toString('base64')},${b.toString('base64')}` })).toEqual([
      ['x-bin', a],
      ['x-bin', b],
    ]);
  });

  it('skips undefined values', () => {
    expect(forwardableMetadata({ a: undefined })).toEqual([]);
  });
});
