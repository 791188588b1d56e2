/**
 * Runs Bazel's remote worker (see remote-worker.ts) for scripts such as
 * scripts/demo.sh:
 *
 *   node dist/test/support/e2e-worker-cli.js [--store-root DIR]
 *
 * Prints `worker port=<port> pid=<pid>` on stdout once the worker accepts
 * connections, then keeps it running until this process gets SIGTERM, SIGINT
 * or SIGHUP, or its parent exits; then stops the worker and exits. If this
 * process is killed outright, the worker dies with it (parent-death signal).
 */
import { startWorker } from './remote-worker';

function parseArgs(argv: string[]): { storeRoot?: string } {
  const out: { storeRoot?: string } = {};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--store-root' && argv[i + 1] !== undefined) out.storeRoot = argv[++i];
    else throw new Error(`unknown argument ${argv[i]}; usage: e2e-worker-cli [--store-root DIR]`);
  }
  return out;
}

async function main(): Promise<void> {
  const { storeRoot } = parseArgs(process.argv.slice(2));
  const worker = await startWorker(storeRoot === undefined ? {} : { storeRoot });
  let stopping = false;
  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await worker.stop();
    process.exit(0);
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(sig, () => void stop());
  // A script killed outright cannot stop us: notice that our parent is gone.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) void stop();
  }, 1000);
  process.stdout.write(`worker port=${worker.port} pid=${worker.pid}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`e2e-worker-cli: ${(e as Error).message}\n`);
  process.exit(1);
});
