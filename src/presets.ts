// Runs in: the Node process. Presets: policies for common jobs, resolved for this machine
// (which caches exist, where Node is installed, which package registries are configured).
// `presets.NAME()` in code, `--preset NAME` on the command line, `corral presets` lists them.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { CorralError } from './errors';
import type { Policy } from './policy';

/** Where a preset is applied. */
export interface PresetOptions {
  /**
   * The directory the job works in: the CI workspace, the untrusted code's own directory,
   * the agent's repository.
   * @default process.cwd()
   */
  dir?: string;
}

/** The names `--preset` and `presets` know. */
export type PresetName = 'ci' | 'untrusted' | 'agent' | 'strict';

/**
 * Files that hold credentials: hidden wherever a preset makes the home directory readable.
 * One that does not exist is reserved by an empty placeholder while a sandbox runs, so it
 * stays hidden if created meanwhile (a directory where the path ends with `/`).
 */
export const SECRET_PATHS: readonly string[] = [
  '~/.ssh/',
  '~/.gnupg/',
  '~/.aws/',
  '~/.azure/',
  '~/.config/gcloud/',
  '~/.kube/',
  '~/.docker/config.json',
  '~/.netrc',
  '~/.git-credentials',
  '~/.config/gh/',
  '~/.config/hub/',
  '~/.npmrc',
  '~/.yarnrc.yml',
  '~/.pypirc',
  '~/.cargo/credentials',
  '~/.cargo/credentials.toml',
  '~/.terraform.d/credentials.tfrc.json',
  '~/.vault-token',
  '~/.password-store/',
  '~/.local/share/keyrings/',
];

/**
 * Files in a repository or home directory that run code later (hooks, editor tasks, shell
 * start-up, package-manager settings): kept read-only for an agent working there (those
 * that do not exist are reserved as for `SECRET_PATHS`).
 */
export const CODE_RUNNING_LATER: readonly string[] = [
  '.git/hooks/',
  '.git/config',
  '.gitmodules',
  '.husky/',
  '.pre-commit-config.yaml',
  '.vscode/',
  '.idea/',
  '.devcontainer/',
  '.envrc',
  '.npmrc',
  '.yarnrc',
  '.yarnrc.yml',
  '~/.bashrc',
  '~/.bash_profile',
  '~/.bash_login',
  '~/.profile',
  '~/.zshrc',
  '~/.zshenv',
  '~/.zprofile',
  '~/.config/fish/',
  '~/.gitconfig',
  '~/.config/git/',
];

/** Package caches a build may write to. Paths that do not exist are left out. */
const CACHES = ['~/.npm', '~/.cache', '~/.yarn', '~/.pnpm-store', '~/.local/share/pnpm', '~/.cargo/registry', '~/.cargo/git', '~/go/pkg/mod', '~/.m2/repository', '~/.gradle/caches'];
/** Tool installations under the home directory that a build runs. */
const TOOLCHAINS = ['~/.cargo/bin', '~/.rustup', '~/.nvm', '~/.volta', '~/.local/bin', '~/go/bin', '~/.deno', '~/.bun'];

const home = () => homedir();
const expand = (p: string) => (p === '~' ? home() : p.startsWith('~/') ? join(home(), p.slice(2)) : p);
const existing = (paths: readonly string[]) => paths.filter((p) => existsSync(expand(p)));

/** The installation Node runs from, when it is not a system directory already executable. */
function nodeInstall(): string[] {
  const prefix = dirname(dirname(process.execPath));
  return /^\/(usr|bin|sbin|lib)/.test(prefix) ? [] : [prefix];
}

/** Registries, as `host:port`, from the package managers' own configuration. */
export function configuredRegistries(dir: string): { hosts: string[]; npm?: string } {
  const urls: string[] = [];
  const npm = npmRegistry(dir);
  if (npm) urls.push(npm);
  for (const f of [join(dir, '.npmrc'), expand('~/.npmrc')]) {
    // Scoped registries (`@scope:registry=`) count too.
    for (const m of readText(f).matchAll(/^\s*@[^:\s]+:registry\s*=\s*(\S+)/gm)) urls.push(m[1]);
  }
  for (const f of [join(dir, '.yarnrc.yml'), expand('~/.yarnrc.yml')]) {
    for (const m of readText(f).matchAll(/^\s*npmRegistryServer:\s*["']?([^"'\s]+)/gm)) urls.push(m[1]);
  }
  for (const v of [process.env.PIP_INDEX_URL, ...(process.env.PIP_EXTRA_INDEX_URL ?? '').split(/\s+/)]) if (v) urls.push(v);
  for (const f of [expand('~/.config/pip/pip.conf'), expand('~/.pip/pip.conf'), '/etc/pip.conf']) {
    for (const m of readText(f).matchAll(/^\s*(?:extra-)?index-url\s*=\s*(\S+)/gm)) urls.push(m[1]);
  }
  const hosts = new Set<string>();
  for (const u of urls) {
    try {
      const url = new URL(u);
      if (url.protocol === 'http:' || url.protocol === 'https:') hosts.add(`${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`);
    } catch {
      // not a URL: nothing to allow
    }
  }
  return { hosts: [...hosts], ...(npm ? { npm } : {}) };
}

let npmAnswer: string | null | undefined;

/** npm's registry: its environment, its .npmrc files, else npm's own answer (asked once). */
function npmRegistry(dir: string): string | undefined {
  const env = process.env.npm_config_registry ?? process.env.NPM_CONFIG_REGISTRY;
  if (env) return env;
  for (const f of [join(dir, '.npmrc'), expand('~/.npmrc'), join(dirname(dirname(process.execPath)), 'etc', 'npmrc')]) {
    const m = /^\s*registry\s*=\s*(\S+)/m.exec(readText(f));
    if (m) return m[1];
  }
  if (npmAnswer === undefined) {
    try {
      npmAnswer = execFileSync('npm', ['config', 'get', 'registry'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'], cwd: dir }).trim() || null;
    } catch {
      npmAnswer = null; // npm is not installed: no npm registry to allow
    }
  }
  return npmAnswer ?? undefined;
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** The git repository around `dir` (its top directory), or `dir` itself. */
function repositoryRoot(dir: string): string {
  for (let d = dir; ; d = dirname(d)) {
    if (existsSync(join(d, '.git'))) return d;
    if (dirname(d) === d) return dir;
  }
}

interface PresetDefinition {
  /** What it is for and what it grants, in a sentence. */
  description: string;
  build(dir: string): Policy;
}

const DEFINITIONS: Record<PresetName, PresetDefinition> = {
  ci: {
    description:
      'a CI job: the workspace writable (and executable), package caches writable, the home directory readable without its secrets, no inherited environment but CI, network only to the package registries configured here',
    build(dir) {
      const registries = configuredRegistries(dir);
      return {
        fs: {
          read: existing(['~']),
          write: [dir, ...existing(CACHES)],
          exec: [dir, ...existing(TOOLCHAINS), ...nodeInstall()],
          deny: [...SECRET_PATHS],
        },
        network: { allow: registries.hosts },
        inheritEnv: ['CI'],
        // HOME stays the real one, so that tools find their caches (corral's own default
        // is /tmp when the home directory is not writable); ~/.npmrc is hidden (it holds
        // tokens), so npm is told where its registry is instead.
        env: { HOME: home(), ...(registries.npm ? { npm_config_registry: registries.npm } : {}) },
        cwd: dir,
      };
    },
  },
  untrusted: {
    description:
      "code you do not trust: nothing but its own directory (read, write, execute), no network, the strict seccomp profile, 1G of memory, 256 processes, 10 minutes",
    build(dir) {
      return {
        fs: { write: [dir], exec: [dir, ...nodeInstall()] },
        network: 'none',
        seccomp: 'strict',
        limits: { memory: '1G', pids: 256, openFiles: 1024, fileSize: '1G', disk: '512M' },
        timeout: '10m',
        cwd: dir,
      };
    },
  },
  agent: {
    description:
      'an AI agent in a repository: the home directory readable without its secrets, the repository writable, files that run code later (git hooks and config, editor and shell settings, .npmrc, .envrc) read-only, no network (add --net-allow for the hosts it needs)',
    build(dir) {
      const repo = repositoryRoot(dir);
      // In a git worktree `.git` is a file naming the real git directory (outside the
      // repository, so read-only already): keep that file itself from being redirected.
      const gitFile = existsSync(join(repo, '.git')) && !statSync(join(repo, '.git')).isDirectory();
      const later = CODE_RUNNING_LATER.filter((p) => !(gitFile && p.startsWith('.git/'))).concat(gitFile ? ['.git'] : []);
      return {
        fs: {
          read: existing(['~']),
          write: [repo],
          exec: [repo, ...existing(TOOLCHAINS), ...nodeInstall()],
          deny: [...SECRET_PATHS],
          protect: later.map((p) => (p.startsWith('~') ? p : join(repo, p))),
        },
        network: 'none',
        // The real HOME, read-only: the agent's tools find their settings there.
        env: { HOME: home() },
        cwd: dir,
      };
    },
  },
  strict: {
    description:
      'the tightest: nothing granted beyond the system defaults, no network, the strict seccomp profile, small limits, and a refusal to run when this host cannot enforce every rule',
    build() {
      return {
        network: 'none',
        seccomp: 'strict',
        limits: { memory: '512M', pids: 64, openFiles: 256, fileSize: '64M', disk: '64M', cpuTime: '1m' },
        timeout: '5m',
        strict: true,
      };
    },
  },
};

/** The preset names and what each grants. */
export function presetDescriptions(): { name: PresetName; description: string }[] {
  return (Object.keys(DEFINITIONS) as PresetName[]).map((name) => ({ name, description: DEFINITIONS[name].description }));
}

/**
 * The policy of preset `name` for `options.dir`.
 *
 * @throws {CorralError} `POLICY_INVALID` (field `preset`) for a name that is not a preset.
 */
export function preset(name: string, options: PresetOptions = {}): Policy {
  const def = (DEFINITIONS as Record<string, PresetDefinition | undefined>)[name];
  if (!def || !Object.prototype.hasOwnProperty.call(DEFINITIONS, name)) {
    throw new CorralError('POLICY_INVALID', `unknown preset ${JSON.stringify(name)} (one of: ${Object.keys(DEFINITIONS).join(', ')})`, { field: 'preset' });
  }
  return def.build(resolve(options.dir ?? process.cwd()));
}

/**
 * Policies for common jobs, resolved for this machine. Add to one with `mergePolicies`:
 *
 * @example
 * await run(mergePolicies(presets.ci(), { timeout: '20m' }), ['npm', 'test']);
 * await run(presets.agent({ dir: repo }), ['sh', '-c', task]);
 */
export const presets: { readonly [K in PresetName]: (options?: PresetOptions) => Policy } = {
  /** A CI job: see {@link presetDescriptions}. */
  ci: (options) => preset('ci', options),
  /** Code you do not trust: its own directory and nothing else. */
  untrusted: (options) => preset('untrusted', options),
  /** An AI agent working in a repository. */
  agent: (options) => preset('agent', options),
  /** The tightest policy, refusing to run with any caveat. */
  strict: (options) => preset('strict', options),
};
