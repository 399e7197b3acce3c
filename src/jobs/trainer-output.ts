// trainer.distill's output, one line at a time: a JSON object with step and total is a progress line, one with
// "event": "exported" names the package it wrote; anything else is a human message. Both runners read lines through
// this: the local one from the child's stdout, the kubernetes one from the pod log (stdout and stderr together).

export interface TrainerProgress {
  step: number;
  total: number;
  eta_s?: number;
  kappa?: number;
  [metric: string]: unknown;
}

export interface TrainerExported {
  event: 'exported';
  model_id: string;
  package: string;
  steps: number;
  metrics: Record<string, unknown>;
}

export type TrainerLine =
  | { kind: 'progress'; record: TrainerProgress }
  | { kind: 'exported'; event: TrainerExported }
  | { kind: 'message'; text: string };

const isCount = (value: unknown): value is number => typeof value === 'number' && Number.isInteger(value) && value >= 0;

export function parseTrainerLine(line: string): TrainerLine {
  const text = line.trimEnd();
  if (text.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { kind: 'message', text };
    }
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      const object = value as Record<string, unknown>;
      if (object.event === 'exported' && typeof object.model_id === 'string') return { kind: 'exported', event: object as unknown as TrainerExported };
      if (isCount(object.step) && isCount(object.total)) return { kind: 'progress', record: object as TrainerProgress };
    }
  }
  return { kind: 'message', text };
}

/** The last few human messages of a run, for the error text of a failed job. */
export class MessageTail {
  private readonly lines: string[] = [];

  constructor(private readonly size = 20) {}

  push(text: string): void {
    if (text.trim() === '') return;
    this.lines.push(text);
    if (this.lines.length > this.size) this.lines.shift();
  }

  /** The trainer's own verdict ("config error: ...", "distill failed: ...", a traceback's last line): the last line. */
  last(): string | undefined {
    return this.lines.at(-1);
  }
}

/** "trainer exited with code 2: config error: ..." */
export function exitDescription(code: number | null, signal: string | null, lastMessage: string | undefined): string {
  const how = code === null ? `was killed by ${signal ?? 'a signal'}` : `exited with code ${code}`;
  return lastMessage === undefined ? `trainer ${how}` : `trainer ${how}: ${lastMessage}`;
}
