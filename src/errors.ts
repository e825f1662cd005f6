// Runs in: the Node process. The one error class corral throws, and how the addon's errors become it.
/**
 * Stable error codes. `POLICY_INVALID` always names the offending `field`.
 *
 * - `POLICY_INVALID`: the policy or the command is malformed.
 * - `SPAWN_FAILED`: the sandbox could not be created or the command not started. When the
 *   command itself could not be executed, `field` is `argv[0]` and `errno` says why
 *   (`ENOENT`: not found, `EACCES`: may not run); without `field` the sandbox's own setup
 *   failed (`errno`, if any, is that step's).
 * - `UNSUPPORTED`: this host cannot do what was asked, or strict mode refused a caveat.
 * - `ABORTED`: the run was cancelled.
 * - `INTERNAL`: a bug in corral.
 */
export type ErrorCode = 'POLICY_INVALID' | 'SPAWN_FAILED' | 'UNSUPPORTED' | 'ABORTED' | 'INTERNAL';

/** The one error class corral throws. */
export class CorralError extends Error {
  /** Stable, documented code. */
  readonly code: ErrorCode;
  /** The policy field at fault (dotted path such as `limits.memory` or `fs.read[2]`). */
  readonly field?: string;
  /** What the user can do about it. */
  readonly hint?: string;
  /** The OS error number behind a `SPAWN_FAILED`, if any. */
  readonly errno?: number;

  constructor(code: ErrorCode, message: string, details: { field?: string; hint?: string; errno?: number } = {}) {
    const where = details.field ? `${details.field}: ` : '';
    const hint = details.hint ? ` (${details.hint})` : '';
    super(`${where}${message}${hint}`);
    this.name = 'CorralError';
    this.code = code;
    if (details.field !== undefined) this.field = details.field;
    if (details.hint !== undefined) this.hint = details.hint;
    if (details.errno !== undefined) this.errno = details.errno;
  }
}

const PREFIX = 'CORRAL_ERROR ';

/** Turns an error thrown by the native binding into a `CorralError`. */
export function fromNative(e: unknown): Error {
  if (e instanceof Error && e.message.startsWith(PREFIX)) {
    try {
      const data = JSON.parse(e.message.slice(PREFIX.length)) as {
        code: ErrorCode;
        message: string;
        field?: string;
        hint?: string;
        errno?: number;
      };
      return new CorralError(data.code, data.message, data);
    } catch {
      return new CorralError('INTERNAL', e.message);
    }
  }
  return e instanceof Error ? e : new CorralError('INTERNAL', String(e));
}
