import { localWorlds } from '../helpers/local-worlds.js';
import { backendSuite } from './suite.js';

// Ranks as worlds in this process, every pair over loopback TCP. A small eager limit makes the
// rendezvous path carry most sizes too.
backendSuite({
  transport: 'tcp',
  maxSize: 8,
  eagerLimitBytes: 4096,
  async setup(size) {
    return localWorlds(size, { only: ['tcp'], eagerLimitBytes: 4096, eagerCredits: 16 });
  },
});
