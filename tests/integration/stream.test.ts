// vmcomm/stream across real jobs (`vmcomm run -n 2`), over shared memory (the default between local
// processes), tcp and threads: 256 MiB with sha256 on both ends, the semantics fixture (half-close,
// two streams beside the application's messages, back-pressure with bounded memory, reset, reopening),
// Node's http over a stream, and a peer killed mid-stream. Timeouts are "must finish" nets only.
import { describe, expect, it } from 'vitest';
import { lines, vmcomm } from '../helpers/processes.js';

const PIPE = 'tests/fixtures/stream/pipe.ts';
const SEMANTICS = 'tests/fixtures/stream/semantics.ts';

/** How each transport is asked for, and the name `transportOf` then reports. */
const TRANSPORTS = [
  { name: 'shm', args: [] as string[] },
  { name: 'tcp', args: ['--backends', 'tcp'] },
  { name: 'threads', args: ['--threads'] },
] as const;

describe('vmcomm/stream in real jobs', () => {
  for (const t of TRANSPORTS) {
    it(`pipes 256 MiB over ${t.name}; both ends hash the same bytes, then the reader answers after the end`, async () => {
      const out = await vmcomm(['run', '-n', '2', ...t.args, PIPE], process.env, 60_000);
      expect(out.stderr).toBe('');
      expect(out.code).toBe(0);
      const digests = lines(out.stdout)
        .map((l) => /^rank (\d): sha256 ([0-9a-f]{64}) bytes (\d+) transport (\w+)/.exec(l))
        .filter((m) => m !== null)
        .map((m) => ({ rank: m[1], sha: m[2], bytes: Number(m[3]), transport: m[4] }));
      expect(digests).toHaveLength(2);
      expect(digests[0].sha).toBe(digests[1].sha);
      expect(digests.map((d) => [d.bytes, d.transport])).toEqual([
        [256 * 1024 * 1024, t.name],
        [256 * 1024 * 1024, t.name],
      ]);
      expect(out.stdout).toContain('rank 0: digests match');
    }, 70_000);
  }

  for (const t of TRANSPORTS) {
    it(`keeps the stream semantics over ${t.name}`, async () => {
      const out = await vmcomm(['run', '-n', '2', ...t.args, SEMANTICS], process.env, 60_000);
      expect(out.stderr).toBe('');
      const all = lines(out.stdout);
      expect(all.filter((l) => / FAIL/.test(l))).toEqual([]);
      expect(out.code).toBe(0);
      // 4 half-close, 4 beside the application's messages, 8 back-pressure, 3 reset, 2 reopening, 2 leftovers.
      expect(all.filter((l) => / OK$/.test(l))).toHaveLength(23);
      expect(all.filter((l) => l.endsWith(`semantics done (${t.name})`))).toHaveLength(2);
    }, 70_000);
  }

  it('serves Node’s http over a stream: two keep-alive GETs with bodies on one connection', async () => {
    const out = await vmcomm(['run', '-n', '2', 'tests/fixtures/stream/http.ts']);
    expect(out.stderr).toBe('');
    expect(out.code).toBe(0);
    const all = lines(out.stdout);
    expect(all).toContain('rank 0: /small?size=5 200 OK');
    expect(all).toContain('rank 0: /large?size=4000000 200 OK');
    expect(all).toContain('rank 0: one connection');
    expect(all).toContain('rank 0: stream closed');
    expect(all).toContain('rank 1: stream closed');
  });

  it('a peer killed mid-stream fails the stream with PEER_LOST; the survivor finalizes', async () => {
    const out = await vmcomm(['run', '-n', '2', 'tests/fixtures/stream/peer-loss.ts']);
    expect(out.stdout).toContain('rank 0: stream error PEER_LOST');
    expect(out.stdout).toContain('rank 0: finalized');
    expect(out.stderr).toMatch(/rank 1 \(pid \d+\) was killed by SIGKILL/);
    expect(out.code).not.toBe(0);
  });
});
