import { memory } from '../helpers/memory-transport.js';
import { localWorlds } from '../helpers/local-worlds.js';
import { backendSuite } from './suite.js';

// A transport plugged in through init({ backends }) passes the same suite as the built-in ones.
backendSuite({
  transport: 'memory',
  maxSize: 8,
  eagerLimitBytes: 2048,
  largestBytes: 16 * 1024 * 1024,
  framesSpanPolls: false,
  async setup(size) {
    const plugin = memory({ eagerLimitBytes: 2048, eagerCredits: 4 });
    return localWorlds(size, { backends: [plugin], only: ['memory'] });
  },
});
