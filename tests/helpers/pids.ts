/**
 * Whether a process exists, by signal 0 (no dependencies: the soak runner and the namespace and QEMU
 * harnesses load this outside vitest). EPERM means it exists but is someone else's; only ESRCH
 * means it is gone. A zombie still counts as existing.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
