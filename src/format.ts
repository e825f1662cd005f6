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
