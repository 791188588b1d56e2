/**
 * Actions for the Execute scenarios: a Command and an input tree whose files
 * mention given /nix/store paths, with every blob the upstream must hold.
 * Deterministic for a given salt. Pure apart from hashing.
 */
import { blobOf, digestOf, type Blob } from './bench-data';
import { bytesField, varintField } from './grpc-wire';

export interface BenchAction {
  action: Blob;
  /** Every blob of the action: Action, Command, directories, files. */
  blobs: Blob[];
  /** Files + directories in the input tree (root included). */
  treeNodes: number;
}

export interface TreeShape {
  files: number;
  directories: number;
}

function fileNode(name: string, file: Blob, executable: boolean): Buffer {
  return bytesField(
    1,
    Buffer.concat([
      bytesField(1, name),
      bytesField(2, digestOf(file)),
      executable ? varintField(4, 1) : Buffer.alloc(0),
    ]),
  );
}

function dirNode(name: string, dir: Blob): Buffer {
  return bytesField(2, Buffer.concat([bytesField(1, name), bytesField(2, digestOf(dir))]));
}

/**
 * A two-level tree of `shape.directories` directories (root included) holding
 * `shape.files` distinct files; the first `refs.length` files each mention one
 * of `refs` (as a script's interpreter line would).
 */
function inputTree(shape: TreeShape, refs: readonly string[], salt: string): { root: Blob; blobs: Blob[] } {
  const blobs: Blob[] = [];
  const dirCount = Math.max(1, shape.directories);
  // File i goes to directory i % dirCount; directory 0 is the root.
  const filesOf: Blob[][] = Array.from({ length: dirCount }, () => []);
  for (let i = 0; i < shape.files; i++) {
    const ref = i < refs.length ? `#!${refs[i]}/bin/sh\n` : '';
    const file = blobOf(`${ref}# bench input ${i} of ${salt}\necho ${i}\n`);
    blobs.push(file);
    filesOf[i % dirCount]!.push(file);
  }
  const level1 = Math.min(dirCount - 1, Math.ceil(Math.sqrt(dirCount)));
  const childrenOf: number[][] = Array.from({ length: dirCount }, () => []);
  for (let d = 1; d < dirCount; d++) childrenOf[d <= level1 ? 0 : 1 + ((d - level1 - 1) % level1)]!.push(d);
  const built = new Map<number, Blob>();
  const build = (d: number): Blob => {
    // Names sort as REAPI requires: zero-padded.
    const files = filesOf[d]!.map((f, i) => fileNode(`f${String(i).padStart(5, '0')}.sh`, f, true));
    const dirs = childrenOf[d]!.map((c) => dirNode(`d${String(c).padStart(5, '0')}`, built.get(c) ?? build(c)));
    const dir = blobOf(Buffer.concat([...files, ...dirs]));
    built.set(d, dir);
    blobs.push(dir);
    return dir;
  };
  for (let d = dirCount - 1; d >= 1; d--) if (!built.has(d)) build(d);
  const root = build(0);
  return { root, blobs };
}

/** An Action running `tool` (a store path) over an input tree; `salt` makes its digest unique. */
export function benchAction(
  shape: TreeShape,
  treeRefs: readonly string[],
  commandRefs: readonly string[],
  salt: string,
): BenchAction {
  const tree = inputTree(shape, treeRefs, salt);
  const path = commandRefs.map((r) => `${r}/bin`).join(':') || '/bin';
  const command = blobOf(
    Buffer.concat([
      bytesField(1, '/bin/sh'),
      bytesField(1, '-c'),
      bytesField(1, `run-bench-step ${salt}`),
      bytesField(2, Buffer.concat([bytesField(1, 'PATH'), bytesField(2, path)])),
      bytesField(7, 'out'),
    ]),
  );
  const action = blobOf(
    Buffer.concat([bytesField(1, digestOf(command)), bytesField(2, digestOf(tree.root)), bytesField(9, salt)]),
  );
  return { action, blobs: [...tree.blobs, command, action], treeNodes: shape.files + Math.max(1, shape.directories) };
}
