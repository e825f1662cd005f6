// Runs in: the Node process. Captured output: the default cap, collecting a stream up to
// a cap, and decoding without losing the result to a string Node cannot hold.
import { constants as bufferConstants } from 'node:buffer';
import { Transform, type TransformCallback } from 'node:stream';
import { isPlainObject } from './values';

/**
 * The cap on each captured stream when the policy sets no `limits.maxOutputBytes`: 100 MiB,
 * in line with execa's 100 MB `maxBuffer`. Past it, output is dropped (the command keeps
 * running) and the result says `outputTruncated: true`. Streams (`spawn()`) are not capped.
 */
export const DEFAULT_MAX_OUTPUT_BYTES = 100 * 1024 * 1024;

/**
 * The policy with `limits.maxOutputBytes` set to the default where it says nothing, for
 * calls that capture output. A policy of the wrong shape is left for the core to refuse.
 */
export function withDefaultOutputCap(policy: unknown): unknown {
  if (!isPlainObject(policy)) return policy;
  const limits = policy.limits;
  if (limits === undefined) return { ...policy, limits: { maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES } };
  if (isPlainObject(limits) && limits.maxOutputBytes === undefined) return { ...policy, limits: { ...limits, maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES } };
  return policy;
}

/** Collects chunks up to `cap` bytes; what does not fit is dropped and remembered. */
export class Capture {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly cap: number) {}

  /** Keeps what fits of `chunk` and returns it (empty once the cap is reached). */
  push(chunk: Buffer): Buffer {
    const room = this.cap - this.size;
    if (chunk.length > room) this.truncated = true;
    const kept = room <= 0 ? chunk.subarray(0, 0) : chunk.length > room ? chunk.subarray(0, room) : chunk;
    if (kept.length) {
      this.chunks.push(kept);
      this.size += kept.length;
    }
    return kept;
  }

  buffer(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }
}

/** How many bytes of `encoding` fit in a string of `chars` characters. */
function maxDecodableBytes(encoding: BufferEncoding, chars: number): number {
  switch (encoding) {
    case 'hex':
      return Math.floor(chars / 2);
    case 'base64':
    case 'base64url':
      return Math.floor(chars / 4) * 3;
    default:
      // utf8, latin1, ascii, utf16le, ucs2: never more characters than bytes.
      return chars;
  }
}

/**
 * `bytes` as a string in `encoding`. Output longer than Node's longest string is cut to
 * fit (`truncated`) instead of failing with ERR_STRING_TOO_LONG and losing the result.
 */
export function decode(bytes: Buffer, encoding: BufferEncoding, maxChars = bufferConstants.MAX_STRING_LENGTH): { text: string; truncated: boolean } {
  const max = maxDecodableBytes(encoding, maxChars);
  if (bytes.length <= max) return { text: bytes.toString(encoding), truncated: false };
  return { text: bytes.subarray(0, max).toString(encoding), truncated: true };
}

/**
 * Passes the first `cap` bytes through and drops the rest (the writer is never blocked,
 * so the command keeps running); `truncated` says whether anything was dropped.
 */
export class CapStream extends Transform {
  private size = 0;
  truncated = false;

  constructor(private readonly cap: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const room = this.cap - this.size;
    if (chunk.length > room) this.truncated = true;
    if (room > 0) {
      const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.size += kept.length;
      this.push(kept);
    }
    done();
  }
}
