// Which backbones a fine-tune job can start from: those with a teacher checkpoint teacher-<backbone>.pt in the base
// models folder (the trainer distils that teacher). The trainer's own backbone families are listed too, so that a
// refusal can say which of them still lack a trained teacher.
import { readdir } from 'node:fs/promises';

/** trainer/sample.py's BACKBONES (test/jobs-backbones.test.ts keeps the two equal). */
export const TRAINER_BACKBONES: readonly string[] = ['unet-eps', 'unet-v', 'dit'];

/** A backbone name: also a file name part, so nothing that could leave the folder. */
export const BACKBONE_PATTERN = '^[a-z0-9][a-z0-9._-]{0,63}$';
const backbonePattern = new RegExp(BACKBONE_PATTERN);
const teacherFile = /^teacher-(.+)\.pt$/;

export interface Backbones {
  /** Backbones with a teacher checkpoint, sorted. */
  known: string[];
  /** Trainer backbones without one yet. */
  untrained: string[];
}

export async function listBackbones(baseModelsDir: string): Promise<Backbones> {
  const files = await readdir(baseModelsDir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [] as string[];
    throw error;
  });
  const known = files
    .map((file) => teacherFile.exec(file)?.[1])
    .filter((name): name is string => name !== undefined && backbonePattern.test(name))
    .sort();
  return { known, untrained: TRAINER_BACKBONES.filter((name) => !known.includes(name)) };
}

/** "unet-eps, dit (no teacher checkpoint yet: unet-v)", for messages. */
export function describeBackbones({ known, untrained }: Backbones): string {
  const listed = known.length > 0 ? known.join(', ') : '(none)';
  return untrained.length > 0 ? `${listed} (trainer backbones without a teacher checkpoint yet: ${untrained.join(', ')})` : listed;
}
