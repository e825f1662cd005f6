// The TypeScript sources stay easy to follow: no import loops, and no file so long that
// it hides several concerns (a long file says at its top why it is long).
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { root } from './helpers';

const src = join(root, 'src');
const files = readdirSync(src).filter((f) => f.endsWith('.ts'));
const text = new Map(files.map((f) => [f, readFileSync(join(src, f), 'utf8')]));

/** The src/ files a file imports (static imports and re-exports, types included). */
function importsOf(file: string): string[] {
  const found = [...text.get(file)!.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?from\s+'\.\/([\w-]+)'/g)].map((m) => `${m[1]}.ts`);
  return [...new Set(found)].filter((f) => text.has(f));
}

describe('src/ layout', () => {
  it('has no import loops', () => {
    const loops: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        loops.push([...path.slice(path.indexOf(f)), f].join(' -> '));
        return;
      }
      state.set(f, 'open');
      for (const g of importsOf(f)) visit(g, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of files) visit(f, []);
    expect(loops).toEqual([]);
  });

  it('keeps files under 600 lines unless the top says why', () => {
    const long = files.filter((f) => text.get(f)!.split('\n').length > 600 && !/^\/\/ Long because/m.test(text.get(f)!.slice(0, 2000)));
    expect(long).toEqual([]);
  });

  it('says at the top of every module which process it runs in', () => {
    expect(files.filter((f) => !/Runs in:/.test(text.get(f)!.slice(0, 1500)))).toEqual([]);
  });
});
