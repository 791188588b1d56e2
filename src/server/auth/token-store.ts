import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import type { Logger } from 'pino';
import { parseTokenFile, tokenDigest, type TokenEntry } from './token-file';

/**
 * The accepted bearer tokens, read from authTokensFile at start (a bad file
 * stops the proxy from starting), then again whenever the file changes (its
 * size or mtime, checked every `pollMs`, which also follows editors that
 * replace the file) or on `reload()` (SIGHUP). A reload that finds a missing,
 * unreadable, empty or bad file keeps the tokens in force and logs why.
 */
export class TokenStore {
  private byDigest = new Map<string, TokenEntry>();
  private watching = false;

  constructor(
    private readonly file: string,
    private readonly logger: Logger,
    private readonly pollMs = 2_000,
  ) {
    const problem = this.read();
    if (problem !== undefined) throw new Error(`authTokensFile ${file}: ${problem}`);
  }

  /** The client name for `token`, or undefined when it is not accepted. */
  lookup(token: string): string | undefined {
    return this.byDigest.get(tokenDigest(token))?.name;
  }

  /** The whole entry (name and rights) for `token`, or undefined when it is not accepted. */
  entry(token: string): TokenEntry | undefined {
    return this.byDigest.get(tokenDigest(token));
  }

  get size(): number {
    return this.byDigest.size;
  }

  watch(): void {
    if (this.watching) return;
    this.watching = true;
    watchFile(this.file, { interval: this.pollMs, persistent: false }, (now: Stats, before: Stats) => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size || now.ino !== before.ino)
        this.reload('file changed');
    });
  }

  reload(why: string): void {
    const before = this.byDigest.size;
    const problem = this.read();
    if (problem !== undefined) {
      this.logger.error(
        { file: this.file, why, problem, tokensInForce: before },
        'auth tokens not reloaded; the previous tokens stay in force',
      );
      return;
    }
    this.logger.info({ file: this.file, why, tokens: this.byDigest.size }, 'auth tokens reloaded');
  }

  close(): void {
    if (this.watching) unwatchFile(this.file);
    this.watching = false;
  }

  /** Replaces the tokens from the file; returns what is wrong instead when it cannot. */
  private read(): string | undefined {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      return `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
    }
    const parsed = parseTokenFile(text);
    if (parsed.problems.length > 0) return parsed.problems.slice(0, 5).join('; ');
    if (parsed.entries.length === 0) return 'holds no tokens (every client would be refused)';
    this.byDigest = new Map(parsed.entries.map((e) => [e.digest, e]));
    return undefined;
  }
}
