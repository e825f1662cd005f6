// Runs in: the Node process. The one error class corral throws, and how the addon's errors become it.

/**
 * Stable error codes. `POLICY_INVALID` always names the offending `field`. The list with
 * what each means and how to fix it is in docs/errors.md.
 *
 * - `POLICY_INVALID`: the policy, the command or an option is malformed.
 * - `SPAWN_FAILED`: the sandbox could not be created or the command not started. When the
 *   command itself could not be executed, `field` is `argv[0]` and `errno` says why
 *   (`ENOENT`: not found, `EACCES`: may not run); without `field` the sandbox's own setup
 *   failed (`errno`, if any, is that step's).
 * - `UNSUPPORTED`: this host cannot do what was asked, or strict mode refused a caveat.
 * - `INVALID_STATE`: something was used after it ended (a closed pool or template, a
 *   sandbox that has exited, changes already committed or discarded).
 * - `ABORTED`: the run was cancelled through its AbortSignal; `cause` is the signal's reason.
 * - `COMMAND_FAILED`: with `reject: true`, the command exited non-zero, was killed or timed
 *   out; the error is a `CommandFailedError` carrying the `result`.
 * - `QUEUE_FULL`: a pool's queue of waiting commands is full (`PoolOptions.maxQueue`).
 * - `INTERNAL`: a bug in corral.
 */
export type ErrorCode = 'POLICY_INVALID' | 'SPAWN_FAILED' | 'UNSUPPORTED' | 'INVALID_STATE' | 'ABORTED' | 'COMMAND_FAILED' | 'QUEUE_FULL' | 'INTERNAL';

/** What a `CorralError` may carry besides its code and message. */
export interface CorralErrorDetails {
  field?: string;
  hint?: string;
  errno?: number;
  /** What led to this error, e.g. an AbortSignal's reason. */
  cause?: unknown;
}

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

  constructor(code: ErrorCode, message: string, details: CorralErrorDetails = {}) {
    const where = details.field ? `${details.field}: ` : '';
    const hint = details.hint ? ` (${details.hint})` : '';
    super(`${where}${message}${hint}`, 'cause' in details ? { cause: details.cause } : undefined);
    this.name = 'CorralError';
    this.code = code;
    if (details.field !== undefined) this.field = details.field;
    if (details.hint !== undefined) this.hint = details.hint;
    if (details.errno !== undefined) this.errno = details.errno;
  }
}

/** The `ABORTED` error for `signal`, carrying its reason as `cause`. */
export function abortError(signal: AbortSignal): CorralError {
  return new CorralError('ABORTED', 'the run was aborted', { cause: signal.reason });
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
