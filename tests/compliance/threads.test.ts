import { threads } from '../../backends/threads/index.js';
import { localWorlds } from '../helpers/local-worlds.js';
import { backendSuite } from './suite.js';

// Ranks as worlds in this process and on this one thread, every pair over threads rings (same-thread
// peers are allowed here; the processes-and-workers case is tests/integration/threads.test.ts). A
// small eager limit and small rings make rendezvous and streaming carry most sizes.
backendSuite({
  transport: 'threads',
  maxSize: 8,
  eagerLimitBytes: 4096,
  progressesInTest: true,
  async setup(size) {
    const backend = threads({ allowSameThread: true, ringBytes: 16 * 1024 });
    return localWorlds(size, { backends: [backend], only: ['threads'], eagerLimitBytes: 4096, eagerCredits: 16 });
  },
});
