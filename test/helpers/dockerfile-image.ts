// What a Dockerfile's final image holds, read from the Dockerfile itself (no Docker engine runs on the build
// machines): its stages, the environment, user and working directory of the final stage, and the paths it copies.
import { readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { DockerfileParser, type Dockerfile, type Instruction } from 'dockerfile-ast';
import { repoRoot } from '../../src/config/paths.js';

export interface Stage {
  from: Instruction;
  name: string | null;
  instructions: Instruction[];
}

export const parseDockerfile = (name: string): Dockerfile => DockerfileParser.parse(readFileSync(join(repoRoot, name), 'utf8'));
export const words = (instruction: Instruction): string[] => instruction.getArguments().map((argument) => argument.getValue());
export const body = (instruction: Instruction): string => instruction.getArgumentsContent() ?? '';

/** Instructions grouped by build stage (each FROM starts one). */
export function stages(dockerfile: Dockerfile): Stage[] {
  const result: Stage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') result.push({ from: instruction, name: words(instruction)[2] ?? null, instructions: [] });
    else result.at(-1)?.instructions.push(instruction);
  }
  return result;
}

const argDefaults = (args: Instruction[]): Map<string, string> =>
  new Map(
    args.map((arg) => {
      const [name, value = ''] = body(arg).split('=', 2) as [string, string?];
      return [name, value] as const;
    }),
  );

/** The default value of each global ARG (declared before the first FROM). */
export const globalArgs = (dockerfile: Dockerfile): Map<string, string> => argDefaults(dockerfile.getInitialARGs());

export interface FinalImage {
  /** ENV of the final stage, ${ARG}s replaced by their defaults. */
  env: Record<string, string>;
  workdir: string;
  uid: number;
  gid: number;
  /** Absolute paths the final stage COPYs into the image. */
  copied: string[];
  /** The scripts of the final stage's RUN instructions. */
  runs: string[];
}

export function finalImage(dockerfile: Dockerfile): FinalImage {
  const final = stages(dockerfile).at(-1)!.instructions;
  const of = (keyword: string) => final.filter((instruction) => instruction.getKeyword() === keyword);
  const args = argDefaults(of('ARG'));
  const env: Record<string, string> = {};
  for (const instruction of of('ENV')) {
    for (const match of body(instruction).matchAll(/(\w+)=(\S+)/g)) {
      env[match[1]!] = match[2]!.replace(/\$\{(\w+)\}/g, (_all, name: string) => args.get(name) ?? env[name] ?? '');
    }
  }
  const workdir = body(of('WORKDIR').at(-1)!);
  const [uid, gid] = body(of('USER').at(-1)!).split(':').map(Number) as [number, number];
  const copied = of('COPY')
    .map((instruction) => words(instruction).filter((word) => !word.startsWith('--')).at(-1)!)
    .map((target) => (target.startsWith('/') ? posix.normalize(target) : posix.join(workdir, target)));
  return { env, workdir, uid, gid, copied, runs: of('RUN').map(body) };
}
