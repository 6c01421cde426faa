import { shm } from '../../backends/shm/index.js';
import { localWorlds } from '../helpers/local-worlds.js';
import { backendSuite } from './suite.js';

// Ranks as worlds in this process, every pair over shm files in /dev/shm (the processes case is
// tests/integration/shm.test.ts). A small eager limit, small rings and a low single-copy threshold
// make rendezvous, streaming through the ring and single copy (a process may read itself) each carry
// part of the sizes.
backendSuite({
  transport: 'shm',
  maxSize: 8,
  eagerLimitBytes: 4096,
  progressesInTest: true,
  async setup(size) {
    const backend = shm({ ringBytes: 16 * 1024, cmaMinBytes: 256 * 1024 });
    return localWorlds(size, { backends: [backend], only: ['shm'], eagerLimitBytes: 4096, eagerCredits: 16 });
  },
});

// The same with single copy off: every payload streams through the ring.
backendSuite({
  transport: 'shm',
  maxSize: 4,
  eagerLimitBytes: 4096,
  progressesInTest: true,
  largestBytes: 16 * 1024 * 1024,
  async setup(size) {
    const backend = shm({ ringBytes: 16 * 1024, cma: false });
    return localWorlds(size, { backends: [backend], only: ['shm'], eagerLimitBytes: 4096, eagerCredits: 16 });
  },
});
