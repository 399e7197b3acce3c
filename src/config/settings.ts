// Settings from the environment and --flags, validated once at start. A bad value stops the program with a message
// that names the setting, where it came from and what is allowed; nothing is silently replaced by a default.
import { Value } from 'typebox/value';
import { SettingsSchema, settingSources, type SettingKey, type Settings } from './settings-schema.js';

export { SettingsSchema, settingSources, type Settings, type SettingKey } from './settings-schema.js';

export class SettingsError extends Error {
  override name = 'SettingsError';
}

interface PropertySchema {
  type?: string;
  default?: unknown;
  description?: string;
  enum?: readonly string[];
  minimum?: number;
  maximum?: number;
  minLength?: number;
}

const keys = Object.keys(settingSources) as SettingKey[];
const propertySchema = (key: SettingKey): PropertySchema => SettingsSchema.properties[key] as PropertySchema;
const keyByFlag = new Map(keys.map((key) => [settingSources[key].flag, key]));

function describeSource(key: SettingKey, from: 'env' | 'flag' | 'value'): string {
  const { env, flag } = settingSources[key];
  if (from === 'env') return `${env} (environment)`;
  if (from === 'flag') return flag;
  return `${key} (${env} / ${flag})`;
}

function convert(key: SettingKey, raw: string, from: 'env' | 'flag'): unknown {
  const schema = propertySchema(key);
  if (schema.type !== 'integer') return raw;
  if (!/^[+-]?\d+$/.test(raw.trim())) {
    throw new SettingsError(`Invalid setting ${describeSource(key, from)}: expected an integer, got ${JSON.stringify(raw)}`);
  }
  return Number(raw.trim());
}

/** Splits `--key=value` and `--key value` arguments into flag values; anything else is an error naming it. */
export function parseFlags(argv: readonly string[]): Map<SettingKey, string> {
  const values = new Map<SettingKey, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const key = keyByFlag.get(flag);
    if (key === undefined) {
      throw new SettingsError(`Unknown argument ${JSON.stringify(arg)}; known flags: ${[...keyByFlag.keys()].join(', ')}`);
    }
    let value: string | undefined = eq === -1 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new SettingsError(`Missing value for ${flag}`);
    values.set(key, value);
  }
  return values;
}

function reason(key: SettingKey, keyword: string, fallback: string): string {
  const schema = propertySchema(key);
  if (keyword === 'enum') return `must be one of ${schema.enum!.join(', ')}`;
  if (keyword === 'minimum' || keyword === 'maximum') return `must be between ${schema.minimum} and ${schema.maximum}`;
  if (keyword === 'minLength') return `must have at least ${schema.minLength} characters`;
  return fallback;
}

/** Checks a complete settings object against the schema; the error names the first bad setting. */
export function validateSettings(candidate: Record<string, unknown>, origin: (key: SettingKey) => 'env' | 'flag' | 'value' = () => 'value'): Settings {
  for (const error of Value.Errors(SettingsSchema, candidate)) {
    const key = error.instancePath.slice(1) as SettingKey;
    if (!keys.includes(key)) throw new SettingsError(`Unknown setting ${JSON.stringify(key || error.params)}`);
    throw new SettingsError(
      `Invalid setting ${describeSource(key, origin(key))}: ${reason(key, error.keyword, error.message)}, got ${JSON.stringify(candidate[key])}`,
    );
  }
  return candidate as Settings;
}

/** The defaults of every setting, with optional overrides (tests, the openapi command); validated. */
export function resolveSettings(overrides: Partial<Settings> = {}): Settings {
  const candidate: Record<string, unknown> = {};
  for (const key of keys) {
    const value = key in overrides ? overrides[key] : propertySchema(key).default;
    if (value !== undefined) candidate[key] = value;
  }
  return validateSettings(candidate);
}

/** Reads every setting from flags (first) and the environment, falling back to the schema's default. */
export function loadSettings(argv: readonly string[], env: NodeJS.ProcessEnv): Settings {
  const flags = parseFlags(argv);
  const candidate: Record<string, unknown> = {};
  const origin = new Map<SettingKey, 'env' | 'flag'>();
  for (const key of keys) {
    const fromFlag = flags.get(key);
    const fromEnv = env[settingSources[key].env];
    if (fromFlag !== undefined) {
      candidate[key] = convert(key, fromFlag, 'flag');
      origin.set(key, 'flag');
    } else if (fromEnv !== undefined && fromEnv !== '') {
      candidate[key] = convert(key, fromEnv, 'env');
      origin.set(key, 'env');
    } else if (propertySchema(key).default !== undefined) {
      candidate[key] = propertySchema(key).default;
    }
  }
  return validateSettings(candidate, (key) => origin.get(key) ?? 'value');
}

/** One line per setting for --help: flag, environment variable, default and description. */
export function settingsHelp(): string {
  const rows = keys.map((key) => {
    const { env, flag } = settingSources[key];
    const schema = propertySchema(key);
    const allowed = schema.enum ? ` (${schema.enum.join('|')})` : '';
    const fallback = schema.default === undefined ? 'unset' : String(schema.default);
    return [`  ${flag}=<value>`, env, `${schema.description}${allowed}; default ${fallback}`];
  });
  const width0 = Math.max(...rows.map((r) => r[0]!.length));
  const width1 = Math.max(...rows.map((r) => r[1]!.length));
  return rows.map(([a, b, c]) => `${a!.padEnd(width0)}  ${b!.padEnd(width1)}  ${c}`).join('\n');
}
