import { describe, expect, it } from 'vitest';
import { initWithBootstrap } from '../../lib/start-world.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { memory } from '../helpers/memory-transport.js';

describe('plug-in transports (init({ backends }))', () => {
  it('are chosen for the pairs they prove in both directions and ignored for the rest', async () => {
    // Ranks 0 and 2 prove each other; rank 1 claims to reach 3 but 3 does not confirm: 1–3 stays tcp.
    const reaches = (self: number, peer: number) => (self % 2 === 0 && peer % 2 === 0) || (self === 1 && peer === 3);
    const plugin = memory({ name: 'even', priority: 50, reaches });
    const comms = await Promise.all(createLocalJob(4).map((b) => initWithBootstrap(b, { backends: [plugin], only: ['even', 'tcp'] })));
    try {
      const matrix = comms.map((c) => Array.from({ length: 4 }, (_, p) => c.transportOf(p)));
      expect(matrix).toEqual([
        ['self', 'tcp', 'even', 'tcp'],
        ['tcp', 'self', 'tcp', 'tcp'],
        ['even', 'tcp', 'self', 'tcp'],
        ['tcp', 'tcp', 'tcp', 'self'],
      ]);
      // Traffic flows on both kinds of pairs; only the plug-in pairs opened plug-in channels.
      const msgs = comms.flatMap((c) => comms.map((d) => (c === d ? undefined : c.isend(`${c.rank}->${d.rank}`, d.rank, 3))));
      for (const d of comms) {
        const got = new Set<string>();
        for (let i = 0; i < 3; i++) got.add(await d.recv<string>(undefined, 3));
        expect(got).toEqual(new Set(comms.filter((c) => c !== d).map((c) => `${c.rank}->${d.rank}`)));
      }
      await Promise.all(msgs);
      expect(plugin.instances.map((t) => t.connected.sort())).toEqual([[2], [], [0], []]);
      expect(comms[0].locality().backends).toHaveProperty('even');
      expect(comms[0].stats()[2]).toMatchObject({ transport: 'even', messagesSent: 1 });
    } finally {
      await Promise.all(comms.map((c) => c.finalize()));
    }
  });

  it('a plug-in that is not listed in init({ only }) is not used', async () => {
    const plugin = memory({ priority: 99 });
    const comms = await Promise.all(createLocalJob(2).map((b) => initWithBootstrap(b, { backends: [plugin], only: ['tcp'] })));
    try {
      expect(comms[0].transportOf(1)).toBe('tcp');
      expect(plugin.instances).toHaveLength(0);
    } finally {
      await Promise.all(comms.map((c) => c.finalize()));
    }
  });

  it('rejects malformed plug-ins and options with INVALID_ARGUMENT', async () => {
    const [b] = createLocalJob(1);
    await expect(initWithBootstrap(b, { backends: [(() => undefined) as never] })).rejects.toMatchObject({ name: 'VmcommError', code: 'INVALID_ARGUMENT' });
    await expect(initWithBootstrap(b, { eagerLimitBytes: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(initWithBootstrap(b, { typo: 1 } as never)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('fails init on every rank with UNSUPPORTED when a pair has no transport', async () => {
    const plugin = memory({ reaches: (s, p) => s === p || (s < 2 && p < 2) });
    const results = await Promise.allSettled(createLocalJob(3).map((b) => initWithBootstrap(b, { backends: [plugin], only: ['memory'] })));
    for (const r of results) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'UNSUPPORTED' } });
  });
});
