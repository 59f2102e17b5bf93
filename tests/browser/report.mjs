// tests/browser/report.mjs — the browser tests' log (seconds since start) and check (fails the test
// with what was expected, logs "ok ..." otherwise).
const t0 = Date.now();
export const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  log('ok', what);
}
