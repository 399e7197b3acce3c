// The benchmark suite's command line: `npm run bench` (quick, a few minutes) and `npm run bench:full`.
//   node dist/bench/suite.js [--full] [--model=ID] [--out=DIR] [--seconds=N] [--soak-seconds=N] [--only=a,b]
//                            [--note=TEXT] [--profile]
// See bench/README.md for what is measured and how to read the report.
import { join } from 'node:path';
import { repoRoot } from '../src/config/paths.js';
import { USAGE, parseCli } from './lib/plan.js';
import { runSuite } from './lib/run-suite.js';

async function main(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let cli;
  try {
    cli = parseCli(argv);
  } catch (error) {
    process.stderr.write(`bench: ${(error as Error).message}\n`);
    return 2;
  }
  const results = await runSuite({
    plan: cli.plan,
    out: cli.out ?? join(repoRoot, 'bench', 'results', cli.plan.kind),
    ...(cli.model !== undefined ? { model: cli.model } : {}),
    ...(cli.note !== undefined ? { note: cli.note } : {}),
    profile: cli.profile,
  });
  for (const target of results.targets) {
    const verdict = target.pass === null ? 'not measured' : target.pass ? 'pass' : 'MISS';
    process.stdout.write(`target ${target.id}: ${verdict} (${target.detail})\n`);
  }
  return 0;
}

process.exitCode = await main(process.argv.slice(2));
