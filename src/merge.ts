// Runs in: the Node process. Layers policies on top of each other: a preset, then a
// policy file, then command-line flags (or `presets.NAME(extra)` in code).
//
// A later layer adds to lists (`fs.read`, `network.allow`, …), merges maps (`env`,
// `network.hosts`) and objects (`fs`, `limits`), and replaces single values (`timeout`,
// `fs.writeMode`). Merging never reshapes what it is given: where it has to combine two
// values and one has the wrong type (a string where a list belongs), that is a
// `POLICY_INVALID` naming the field, exactly as the native core would have said of the
// value alone. Values a later layer does not touch pass through for the core to judge.
import { describe, isPlainObject } from './values';
import { CorralError } from './errors';
import type { Policy } from './policy';

/** How a field combines with the same field of a later layer. */
type Shape = 'list' | 'map' | 'value' | 'network' | 'seccomp' | 'inheritEnv' | { [key: string]: Shape };

/**
 * Every policy field and how it merges. The tests hold this against the JSON Schema the
 * native policy model generates, so a new field cannot be forgotten here.
 */
export const POLICY_SHAPE: { [key: string]: Shape } = {
  $schema: 'value',
  fs: {
    read: 'list',
    write: 'list',
    exec: 'list',
    deny: 'list',
    protect: 'list',
    noexec: 'list',
    execWritable: 'value',
    volumes: 'list',
    writeMode: 'value',
    allowUnixSockets: 'list',
  },
  network: 'network',
  env: 'map',
  inheritEnv: 'inheritEnv',
  cwd: 'value',
  hostname: 'value',
  limits: {
    memory: 'value',
    cpus: 'value',
    pids: 'value',
    openFiles: 'value',
    fileSize: 'value',
    disk: 'value',
    cpuTime: 'value',
    maxOutputBytes: 'value',
  },
  timeout: 'value',
  seccomp: 'seccomp',
  strict: 'value',
};

const NETWORK_RULES: { [key: string]: Shape } = {
  allow: 'list',
  deny: 'list',
  hosts: 'map',
  mode: 'value',
  bindPorts: 'list',
  connectPorts: 'list',
};

const SECCOMP_FIELDS: { [key: string]: Shape } = { profile: 'value', allow: 'list', deny: 'list' };

/**
 * `layers` merged left to right (later layers win). `undefined` layers are skipped. Each
 * layer must be an object; `names[i]` says where layer i came from, for messages.
 *
 * @throws {CorralError} `POLICY_INVALID` naming the field when two values cannot combine.
 */
export function mergePolicies(...layers: (Policy | undefined)[]): Policy {
  let merged: Record<string, unknown> = {};
  for (const layer of layers) {
    if (layer === undefined) continue;
    if (!isPlainObject(layer)) throw new CorralError('POLICY_INVALID', `the policy must be an object, got ${describe(layer)}`, { field: 'policy' });
    merged = mergeObject(merged, layer, POLICY_SHAPE, '');
  }
  return merged as Policy;
}

function mergeObject(base: Record<string, unknown>, over: Record<string, unknown>, shape: { [key: string]: Shape }, at: string): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue;
    const field = at ? `${at}.${key}` : key;
    out[key] = key in out && out[key] !== undefined ? mergeValue(out[key], value, shape[key] ?? 'value', field) : value;
  }
  return out;
}

function mergeValue(base: unknown, over: unknown, shape: Shape, field: string): unknown {
  if (typeof shape === 'object') return mergeObject(expectObject(base, field), expectObject(over, field), shape, field);
  switch (shape) {
    case 'value':
      return over;
    case 'list':
      return [...expectList(base, field), ...expectList(over, field)];
    case 'map':
      return { ...expectObject(base, field), ...expectObject(over, field) };
    case 'inheritEnv':
      // Two lists of names add up; `true` / `false` decide outright.
      return Array.isArray(base) && Array.isArray(over) ? [...base, ...over] : over;
    case 'network':
      // A mode ('none', 'host', …) replaces whatever came before; an allow-list on top of
      // another allow-list adds to it; an allow-list on top of a mode replaces the mode.
      return isPlainObject(base) && isPlainObject(over) ? mergeObject(base, over, NETWORK_RULES, field) : over;
    case 'seccomp': {
      // `'strict'` is short for `{ profile: 'strict' }`.
      const asObject = (v: unknown) => (typeof v === 'string' ? { profile: v } : expectObject(v, field));
      if (typeof over === 'string' && (typeof base === 'string' || base === undefined)) return over;
      return mergeObject(asObject(base), asObject(over), SECCOMP_FIELDS, field);
    }
  }
}

function expectList(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) throw new CorralError('POLICY_INVALID', `expected a list, got ${describe(v)}`, { field });
  return v;
}

function expectObject(v: unknown, field: string): Record<string, unknown> {
  if (!isPlainObject(v)) throw new CorralError('POLICY_INVALID', `expected an object, got ${describe(v)}`, { field });
  return v;
}
