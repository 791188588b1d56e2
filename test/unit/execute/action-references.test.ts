import { describe, expect, it } from 'vitest';
import {
  collectActionReferences,
  type ActionFields,
  type CommandFields,
  type References,
} from '../../../src/execute/action-references';
import { ProxyError } from '../../../src/errors';
import { Code } from '../../../src/reapi/grpc-status';
import { P } from './fixtures';

describe('collectActionReferences', () => {
  it.each<[string, ActionFields, CommandFields, Array<[string, string]>]>([
    ['nothing', {}, {}, []],
    ['an argument', {}, { arguments: [`${P.clang}/bin/cc`, '-c', 'x.c'] }, [[P.clang, 'argument 0']]],
    ['inside a flag argument', {}, { arguments: ['cc', `-I${P.glibc}/include`] }, [[P.glibc, 'argument 1']]],
    [
      'an environment variable value',
      {},
      { environmentVariables: [{ name: 'PATH', value: `${P.bash}/bin:${P.clang}/bin` }] },
      [
        [P.bash, 'environment variable PATH'],
        [P.clang, 'environment variable PATH'],
      ],
    ],
    ['env names are not scanned', {}, { environmentVariables: [{ name: P.bash, value: 'x' }] }, []],
    ['the working directory', {}, { workingDirectory: `${P.python}/lib` }, [[P.python, 'working directory']]],
    [
      'a Command platform property value',
      {},
      { platform: { properties: [{ name: 'container-image', value: `nix:${P.zlib}` }] } },
      [[P.zlib, 'Command platform property container-image']],
    ],
    [
      'an Action platform property value',
      { platform: { properties: [{ name: 'toolchain', value: P.glibc }] } },
      {},
      [[P.glibc, 'Action platform property toolchain']],
    ],
    [
      'a platform property name',
      { platform: { properties: [{ name: P.glibc, value: '1' }] } },
      {},
      [[P.glibc, `Action platform property name ${P.glibc}`]],
    ],
    [
      'the first place wins',
      {},
      { arguments: [P.clang], environmentVariables: [{ name: 'CC', value: P.clang }] },
      [[P.clang, 'argument 0']],
    ],
    ['lookalikes are not paths', {}, { arguments: ['/nix/store/abc-short', '/gnu/store/x'] }, []],
    [
      'null fields from protobufjs',
      {},
      { arguments: null, environmentVariables: null, workingDirectory: null, platform: null },
      [],
    ],
  ])('%s', (_name, action, command, expected) => {
    const into: References = new Map();
    collectActionReferences(action, command, into, 100);
    expect([...into]).toEqual(expected);
  });

  it('keeps what an earlier source recorded', () => {
    const into: References = new Map([[P.clang, 'input file x']]);
    collectActionReferences({}, { arguments: [P.clang] }, into, 100);
    expect(into.get(P.clang)).toBe('input file x');
  });

  it('refuses more distinct paths than the limit with RESOURCE_EXHAUSTED', () => {
    const into: References = new Map();
    const command = { arguments: [P.clang, P.bash, P.glibc] };
    expect(() => collectActionReferences({}, command, into, 2)).toThrow(ProxyError);
    try {
      collectActionReferences({}, command, new Map(), 2);
    } catch (err) {
      expect((err as ProxyError).code).toBe(Code.RESOURCE_EXHAUSTED);
      expect((err as ProxyError).message).toContain('limits.storePathsPerAction');
    }
  });

  it('accepts exactly the limit', () => {
    const into: References = new Map();
    collectActionReferences({}, { arguments: [P.clang, P.bash] }, into, 2);
    expect(into.size).toBe(2);
  });
});
