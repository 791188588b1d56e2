import { parseArgs } from 'node:util';
import { CONFIG_KEYS, type ConfigKey } from './config-keys';
import { COMMANDS, GLOBAL_FLAGS, HEALTH_FLAGS, PRUNE_FLAGS, type Command, type CommandFlag } from './command-flags';

/**
 * Splits argv into the subcommand, Config values given as flags, and the
 * subcommand's own flags. Every problem is collected (unknown flags, missing
 * values, flags of another command, stray arguments) instead of stopping at
 * the first, so one run tells the user everything. Pure.
 */

export interface FlagValue {
  key: ConfigKey;
  /** string, string[] for lists, boolean for booleans. */
  raw: unknown;
  /** The flag as typed, e.g. '--no-require-sigs'. */
  flag: string;
}

export interface ParsedArgs {
  command: Command;
  help: boolean;
  version: boolean;
  configFile?: string;
  configFlags: FlagValue[];
  /** The subcommand's own flags by name (string values or true/false). */
  commandFlags: Record<string, string | boolean>;
  problems: string[];
}

type Owner =
  | { kind: 'config'; key: ConfigKey; negated: boolean }
  | { kind: 'command'; command: 'health' | 'prune'; flag: CommandFlag }
  | { kind: 'global'; flag: CommandFlag };

interface OptionRow {
  type: 'string' | 'boolean';
  owner: Owner;
}

function buildOptionTable(): Map<string, OptionRow> {
  const table = new Map<string, OptionRow>();
  const add = (name: string, row: OptionRow) => {
    // A collision would make one flag mean two things; fail at load, caught by any test.
    if (table.has(name)) throw new Error(`flag --${name} is defined twice`);
    table.set(name, row);
  };
  for (const key of CONFIG_KEYS) {
    if (key.kind === 'boolean') {
      add(key.flag, { type: 'boolean', owner: { kind: 'config', key, negated: false } });
      add(`no-${key.flag}`, { type: 'boolean', owner: { kind: 'config', key, negated: true } });
    } else {
      add(key.flag, { type: 'string', owner: { kind: 'config', key, negated: false } });
    }
  }
  for (const flag of HEALTH_FLAGS)
    add(flag.name, { type: flag.type, owner: { kind: 'command', command: 'health', flag } });
  for (const flag of PRUNE_FLAGS)
    add(flag.name, { type: flag.type, owner: { kind: 'command', command: 'prune', flag } });
  for (const flag of GLOBAL_FLAGS) add(flag.name, { type: flag.type, owner: { kind: 'global', flag } });
  return table;
}

const OPTION_TABLE = buildOptionTable();

/** Every flag name the parser knows (without dashes), for tests and --help checks. */
export function knownFlagNames(): string[] {
  return [...OPTION_TABLE.keys()];
}

function flagAllowed(owner: Owner, command: Command): boolean {
  switch (owner.kind) {
    case 'global':
      return true;
    case 'config':
      return command === 'serve' || command === 'prune';
    case 'command':
      return owner.command === command;
  }
}

export function parseCommandLine(argv: readonly string[]): ParsedArgs {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean; short?: string }> = {};
  for (const [name, row] of OPTION_TABLE) {
    const short = row.owner.kind === 'global' ? row.owner.flag.short : undefined;
    options[name] = short ? { type: row.type, short } : { type: row.type };
  }
  // strict: false so that every problem is reported together; the checks below are as strict.
  const { tokens } = parseArgs({ args: [...argv], options, strict: false, allowPositionals: true, tokens: true });

  const problems: string[] = [];
  const positionals: string[] = [];
  const seen: Array<{ row: OptionRow; flag: string; value: string | undefined }> = [];

  // An unknown flag's value is taken for it rather than reported a second time as a stray argument.
  let valueOfUnknownAt = -1;
  for (const token of tokens) {
    if (token.kind === 'positional') {
      if (token.index !== valueOfUnknownAt) positionals.push(token.value);
      continue;
    }
    if (token.kind !== 'option') continue;
    const row = OPTION_TABLE.get(token.name);
    if (!row) {
      problems.push(`unknown flag ${token.rawName} (see --help for every flag)`);
      if (!token.inlineValue) valueOfUnknownAt = token.index + 1;
      continue;
    }
    if (row.type === 'string') {
      if (token.value === undefined) {
        problems.push(`${token.rawName} needs a value`);
        continue;
      }
      if (!token.inlineValue && token.value.startsWith('-')) {
        problems.push(
          `${token.rawName} needs a value but is followed by ${token.value}; write ${token.rawName}=${token.value} if that is the value`,
        );
        continue;
      }
    } else if (token.inlineValue) {
      problems.push(`${token.rawName} takes no value (got ${JSON.stringify(token.value)})`);
      continue;
    }
    seen.push({ row, flag: token.rawName, value: token.value });
  }

  let command: Command = 'serve';
  const [first, ...rest] = positionals;
  if (first !== undefined) {
    if ((COMMANDS as readonly string[]).includes(first)) command = first as Command;
    else problems.push(`unknown command ${JSON.stringify(first)} (commands: ${COMMANDS.join(', ')})`);
  }
  if (rest.length > 0 && command !== 'help') {
    problems.push(`unexpected argument${rest.length > 1 ? 's' : ''} ${rest.map((a) => JSON.stringify(a)).join(' ')}`);
  }

  const result: ParsedArgs = {
    command,
    help: command === 'help',
    version: command === 'version',
    configFlags: [],
    commandFlags: {},
    problems,
  };
  const lists = new Map<ConfigKey, FlagValue>();
  const singles = new Map<ConfigKey, FlagValue>();

  for (const { row, flag, value } of seen) {
    const owner = row.owner;
    if (owner.kind === 'global') {
      if (owner.flag.name === 'help') result.help = true;
      else if (owner.flag.name === 'version') result.version = true;
      else if (owner.flag.name === 'config') result.configFile = value!;
      continue;
    }
    if (!flagAllowed(owner, command)) {
      const where = owner.kind === 'command' ? `the ${owner.command} command` : 'serve and prune';
      problems.push(`${flag} is a flag of ${where}, not of ${command}`);
      continue;
    }
    if (owner.kind === 'command') {
      result.commandFlags[owner.flag.name] = owner.flag.type === 'boolean' ? true : value!;
      continue;
    }
    const key = owner.key;
    if (key.kind === 'list') {
      const entry = lists.get(key) ?? { key, raw: [] as string[], flag };
      (entry.raw as string[]).push(value!);
      lists.set(key, entry);
    } else if (key.kind === 'boolean') {
      singles.set(key, { key, raw: !owner.negated, flag });
    } else {
      singles.set(key, { key, raw: value!, flag });
    }
  }
  result.configFlags = [...singles.values(), ...lists.values()];
  return result;
}
