/**
 * Cleanups that must run however the test process ends: on `exit`, and on SIGINT, SIGTERM or SIGHUP
 * (which otherwise end Node without `exit` handlers). One set of hooks serves every caller, so a
 * signal that nobody else handles still ends the process as it would have — which two sets, each
 * seeing the other as a handler, would not.
 */

const cleanups = new Set<() => void>();
let installed = false;

/** Runs `cleanup` (synchronous) when this process exits or is signalled. Idempotent per function. */
export function cleanUpOnExit(cleanup: () => void): void {
  cleanups.add(cleanup);
  if (installed) return;
  installed = true;
  const runAll = (): void => {
    for (const c of cleanups) c();
  };
  process.on('exit', runAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      runAll();
      // If nobody else handles the signal, let it do what it would have done.
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }
}
