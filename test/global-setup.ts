import { execFileSync } from 'node:child_process';
import path from 'node:path';

/** Builds dist/ once per test run, so tests that start the proxy as a process run the current code. */
export default function setup(): void {
  const root = path.resolve(__dirname, '..');
  execFileSync(
    process.execPath,
    [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(root, 'tsconfig.build.json')],
    { stdio: 'inherit' },
  );
}
