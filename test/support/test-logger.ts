import pino, { type Logger } from 'pino';

/** A logger for tests: silent unless TEST_LOG=debug|info|... is set. */
export function testLogger(): Logger {
  return pino({ level: process.env.TEST_LOG ?? 'silent' });
}
