/**
 * Everything wrong with the configuration, found in one pass. `problems` has
 * one line per bad flag, variable or file key, each naming where the value
 * came from, the value, and why it was refused.
 */
export class ConfigError extends Error {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
    super(
      `invalid configuration (${count}):\n${problems.map((p) => `  - ${p}`).join('\n')}\n` +
        'Fix the settings named above; run `nix-reapi-proxy --help` for every flag, variable and default.',
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}
