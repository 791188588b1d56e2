import { readFileSync } from 'node:fs';

/**
 * A Dockerfile read into stages and instructions, enough to check what can
 * be checked without building: base images, users, ports, the entrypoint.
 * Handles comments, parser directives, `\` continuations, ARG substitution
 * in FROM, and JSON (exec) form arguments.
 */

export interface Instruction {
  keyword: string;
  /** The text after the keyword, continuations joined with a space. */
  args: string;
  line: number;
}

export interface Stage {
  /** FROM image, with ARGs declared before the first FROM substituted. */
  image: string;
  name?: string;
  instructions: Instruction[];
}

export function parseDockerfile(file: string): { stages: Stage[]; globalArgs: Record<string, string> } {
  const lines = readFileSync(file, 'utf8').split('\n');
  const instructions: Instruction[] = [];
  let buffer = '';
  let startLine = 0;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!;
    if (buffer === '' && /^\s*(#|$)/.test(raw)) continue;
    if (buffer !== '' && /^\s*#/.test(raw)) continue; // comment lines inside a continuation are dropped
    if (buffer === '') startLine = i + 1;
    const continued = /\\\s*$/.test(raw);
    buffer += (buffer ? ' ' : '') + raw.replace(/\\\s*$/, '').trim();
    if (continued) continue;
    const m = /^(\S+)\s*(.*)$/.exec(buffer)!;
    instructions.push({ keyword: m[1]!.toUpperCase(), args: m[2]!, line: startLine });
    buffer = '';
  }
  if (buffer !== '') throw new Error(`${file}: ends inside a continued line`);

  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`${file}:${ins.line}: cannot read FROM ${ins.args}`);
      const image = m[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => {
        const name = (a ?? b)!;
        if (!(name in globalArgs)) throw new Error(`${file}:${ins.line}: FROM uses undeclared ARG ${name}`);
        return globalArgs[name]!;
      });
      stages.push({ image, ...(m[2] ? { name: m[2] } : {}), instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== 'ARG') throw new Error(`${file}:${ins.line}: only ARG may come before the first FROM`);
      const m = /^(\w+)(?:=(.*))?$/.exec(ins.args)!;
      globalArgs[m[1]!] = m[2] ?? '';
    } else {
      stages[stages.length - 1]!.instructions.push(ins);
    }
  }
  return { stages, globalArgs };
}

/** Arguments of an exec-form instruction (`["a", "b"]`); throws for shell form. */
export function execForm(ins: Instruction): string[] {
  const json = ins.args.replace(/^(--\S+\s+)*(CMD\s+)?/, '');
  const parsed: unknown = JSON.parse(json);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string'))
    throw new Error(`line ${ins.line}: not exec form`);
  return parsed;
}

export function only(stage: Stage, keyword: string): Instruction {
  const found = stage.instructions.filter((i) => i.keyword === keyword);
  if (found.length !== 1)
    throw new Error(`expected one ${keyword} in stage ${stage.name ?? stage.image}, found ${found.length}`);
  return found[0]!;
}
