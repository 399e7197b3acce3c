// Where the repository lives, found from this module's compiled location (dist/src/config/paths.js), so that
// defaults such as the models/ registry and package.json resolve the same way from any working directory.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));

export const packageInfo = JSON.parse(readFileSync(new URL('package.json', `file://${repoRoot}`), 'utf8')) as {
  name: string;
  version: string;
  description: string;
};
