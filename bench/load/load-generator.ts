/**
 * The bench's load generator, run as its own process for one job:
 *
 *   node dist/bench/load/load-generator.js '<job as JSON>'
 *
 * It prints one JSON line with the result and exits 0, or prints
 * {"error": "..."} and exits 1. Every job is bounded by its own maxMs; the
 * process also gives up after HARD_LIMIT_MS whatever the job says.
 */
import { runTransfer, type TransferJob } from './blob-transfer';
import { runExecuteBatch, type ExecuteBatchJob } from './execute-batch';
import { runStreams, type StreamsJob } from './open-streams';
import { runSeed, type SeedJob } from './seed-upstream';
import { runUnary, type UnaryJob } from './unary-load';

export type LoadJob = UnaryJob | TransferJob | StreamsJob | SeedJob | ExecuteBatchJob;

const HARD_LIMIT_MS = 15 * 60_000;

async function run(job: LoadJob): Promise<unknown> {
  switch (job.kind) {
    case 'unary':
      return runUnary(job);
    case 'read':
    case 'write':
      return runTransfer(job);
    case 'streams':
      return runStreams(job);
    case 'seed':
      return runSeed(job);
    case 'execute-batch':
      return runExecuteBatch(job);
    default:
      throw new Error(`unknown job kind ${(job as { kind: string }).kind}`);
  }
}

function main(): void {
  const killer = setTimeout(() => {
    process.stdout.write(JSON.stringify({ error: `load generator gave up after ${HARD_LIMIT_MS} ms` }) + '\n');
    process.exit(1);
  }, HARD_LIMIT_MS);
  killer.unref();
  let job: LoadJob;
  try {
    job = JSON.parse(process.argv[2] ?? '') as LoadJob;
  } catch {
    process.stdout.write(JSON.stringify({ error: 'usage: load-generator.js <job JSON>' }) + '\n');
    process.exit(2);
  }
  run(job).then(
    (result) => {
      process.stdout.write(JSON.stringify(result) + '\n', () => process.exit(0));
    },
    (err: unknown) => {
      process.stdout.write(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }) + '\n', () =>
        process.exit(1),
      );
    },
  );
}

main();
