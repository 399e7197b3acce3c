// A stand-in for `python -m trainer.distill` in the runner tests: the same command line (--config FILE --out DIR),
// the same output (JSON progress lines on stdout, messages on stderr) and the same exit codes, in milliseconds.
// FAKE_TRAINER picks the behaviour: ok | fail | slow (until SIGTERM: exits 143) | stubborn (ignores SIGTERM).
// `node --test dist/test/` also loads every file under test/: without --config this does nothing.
import { readFileSync } from 'node:fs';

function train(argv: string[]): void {
  const option = (name: string) => argv[argv.indexOf(name) + 1]!;
  const config = JSON.parse(readFileSync(option('--config'), 'utf8')) as { steps: number; name: string };
  const mode = process.env.FAKE_TRAINER ?? 'ok';

  process.stderr.write(`fake trainer: ${JSON.stringify({ argv, cwd: process.cwd() })}\n`);

  const progress = (step: number, total: number) =>
    process.stdout.write(`${JSON.stringify({ step, total, elapsed_s: step * 0.01, eta_s: (total - step) * 0.01, loss_student: 1 / step, loss_lora: 0.5, kappa: 2.5 })}\n`);

  if (mode === 'fail') {
    process.stderr.write('config error: lora_rank must be in [1, 1024], got 0\n');
    process.exit(2);
  }
  if (mode === 'ok') {
    for (let step = 1; step <= config.steps; step++) progress(step, config.steps);
    process.stdout.write(`${JSON.stringify({ event: 'exported', model_id: config.name, package: option('--out'), student: 'student.pt', steps: config.steps, metrics: {} })}\n`);
    process.stderr.write('done\n');
    process.exit(0);
  }
  process.on('SIGTERM', () => {
    if (mode === 'stubborn') return process.stderr.write('ignoring SIGTERM\n');
    process.stderr.write('SIGTERM: checkpoint saved\n');
    process.exit(143);
  });
  let step = 0;
  setInterval(() => progress(++step, 100_000), 20);
}

const argv = process.argv.slice(2);
if (argv.includes('--config')) train(argv);
