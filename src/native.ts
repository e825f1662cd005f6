// Runs in: the Node process. The one module that loads the native addon.
//
// The napi-generated loader (`binding.cjs`, committed, never edited by hand) finds the
// `.node` file beside it in a source build, or in the per-platform npm package. Its types
// are the generated `binding.d.cts`; nothing here restates them.
import type * as Binding from '../binding.cjs';
import { CorralError, fromNative } from './errors';

export type { Binding };
export type CallerContext = Binding.CallerContext;
export type NativeRunOutput = Binding.RunOutput;
export type NativeSpawned = Binding.Spawned;
export type NativeHandle = Binding.SandboxHandle;
export type NativePool = Binding.NativePool;
export type NativeTemplate = Binding.NativeTemplate;
export type NativeClone = Binding.NativeClone;
export type NativeCloneHandle = Binding.CloneHandle;

let loaded: typeof Binding | undefined;

/** The addon, loaded on first use. */
export function binding(): typeof Binding {
  if (!loaded) {
    try {
      loaded = require('../binding.cjs') as typeof Binding;
    } catch (e) {
      throw new CorralError('UNSUPPORTED', `corral's native addon could not be loaded: ${(e as Error).message}`, {
        hint: 'install the package for your platform (npm installs it automatically), or build from source with `npm install` in a checkout (needs cargo)',
      });
    }
  }
  return loaded;
}

/** The caller's working directory and environment, read on the JS thread. */
export function callerContext(): CallerContext {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined) env[k] = v;
  return { cwd: process.cwd(), env };
}

/** Calls into the addon, turning its errors into `CorralError`s. */
export function call<T>(f: (b: typeof Binding) => T): T {
  const b = binding();
  try {
    return f(b);
  } catch (e) {
    throw fromNative(e);
  }
}

/** `call` for the addon's promises. */
export async function callAsync<T>(f: (b: typeof Binding) => Promise<T>): Promise<T> {
  const b = binding();
  try {
    return await f(b);
  } catch (e) {
    throw fromNative(e);
  }
}
