import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

// The built module (`npm test` builds first): the hook runs as a real process exits.
const hook = pathToFileURL(fileURLToPath(new URL('../../dist/lib/exit-hook.js', import.meta.url))).href;

describe('goneAtExit', () => {
  it('calls gone() on every registered transport as the process exits, past one that throws (and says so on stderr), but not on one forgotten', () => {
    const program = `
      import { writeSync } from 'node:fs';
      import { goneAtExit, forgetAtExit } from ${JSON.stringify(hook)};
      const say = (s) => ({ gone: () => writeSync(1, s + '\\n') });
      goneAtExit(say('first'));
      goneAtExit({ gone: () => { throw new Error('boom'); } });
      const stopped = say('stopped');
      goneAtExit(stopped);
      goneAtExit(say('last'));
      forgetAtExit(stopped);
      process.exitCode = 3;
    `;
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', program], { encoding: 'utf8' });
    expect(run.status).toBe(3);
    expect(run.stdout.trim().split('\n')).toEqual(['first', 'last']);
    // The failure is said, not swallowed.
    expect(run.stderr).toContain('vmcomm: marking a transport gone at exit failed: Error: boom');
  });
});
