// Runs in: the Node process. How sizes and durations are shown to people (the parsing of
// what people write is the native core's alone).

/** `256M`, `1.5G`, `4096`: binary multiples, the spelling a policy accepts back. */
export function formatBytes(n: number): string {
  for (const [unit, mult] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['k', 2 ** 10]] as const) {
    if (n >= mult) {
      const v = n / mult;
      return Number.isInteger(v) ? `${v}${unit}` : `${v.toFixed(1)}${unit}`;
    }
  }
  return String(n);
}

/** `500 ms`, `2 s`, `1.5 s`, `3 min`: milliseconds with their unit. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms >= 120_000 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/**
 * Text that a command chose (file names, host names), made safe to print on a terminal:
 * control characters (C0, DEL, C1), the Unicode marks that reorder or hide text (bidi
 * controls, zero-width characters, line and paragraph separators) and the backslash itself
 * are written as escapes (`\x1b`, `\u{202e}`, `\\`), so what is printed is what is there
 * and nothing printed can move the cursor, erase a line or hide another.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE, (c) => {
    if (c === '\\') return '\\\\';
    const code = c.codePointAt(0)!;
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

// C0 and C1 controls, DEL, backslash; soft hyphen; Arabic letter mark; zero-width and bidi
// marks, line and paragraph separators, bidi embeddings and isolates, word joiner and
// invisible operators; the byte order mark; interlinear annotation; lone surrogates.
// eslint-disable-next-line no-control-regex
const UNPRINTABLE = /[\x00-\x1f\x7f-\x9f\\\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Bytes that are meant to be text (a file name that is not valid UTF-8), for a terminal:
 * valid UTF-8 as `printable` shows it, each byte that is not as `\xNN`.
 */
export function printableBytes(bytes: Buffer): string {
  let out = '';
  let i = 0;
  while (i < bytes.length) {
    const n = utf8Length(bytes, i);
    if (n === 0) {
      out += `\\x${bytes[i]!.toString(16).padStart(2, '0')}`;
      i += 1;
    } else {
      out += printable(bytes.toString('utf8', i, i + n));
      i += n;
    }
  }
  return out;
}

/** The length of the well-formed UTF-8 sequence at `i` (no overlongs, surrogates or values past U+10FFFF), or 0. */
function utf8Length(b: Buffer, i: number): number {
  const c = b[i]!;
  if (c < 0x80) return 1;
  const cont = (k: number, lo = 0x80, hi = 0xbf) => i + k < b.length && b[i + k]! >= lo && b[i + k]! <= hi;
  if (c >= 0xc2 && c <= 0xdf) return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    const [lo, hi] = c === 0xe0 ? [0xa0, 0xbf] : c === 0xed ? [0x80, 0x9f] : [0x80, 0xbf];
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    const [lo, hi] = c === 0xf0 ? [0x90, 0xbf] : c === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf];
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}
