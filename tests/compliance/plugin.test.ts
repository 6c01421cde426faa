import { initWithBootstrap } from '../../lib/start-world.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { memory } from '../helpers/memory-transport.js';
import { backendSuite } from './suite.js';

// A transport plugged in through init({ backends }) passes the same suite as the built-in ones.
backendSuite({
  transport: 'memory',
  maxSize: 8,
  eagerLimitBytes: 2048,
  largestBytes: 16 * 1024 * 1024,
  async setup(size) {
    const plugin = memory({ eagerLimitBytes: 2048, eagerCredits: 4 });
    return Promise.all(createLocalJob(size).map((b) => initWithBootstrap(b, { backends: [plugin], only: ['memory'] })));
  },
});
