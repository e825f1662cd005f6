// The ESM face of the package: named exports and the default export, both typed.
import corral, { run, type RunResult } from '../../dist/index.mjs';

const r: Promise<RunResult<string>> = run({}, ['true']);
const d: Promise<RunResult<string>> = corral.run({}, ['true']);
const e: typeof corral.CorralError = corral.CorralError;
void [r, d, e];
