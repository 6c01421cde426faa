import { localWorlds } from '../helpers/local-worlds.js';
import { backendSuite } from './suite.js';

// A world of one: every message is a message to oneself.
backendSuite({
  transport: 'self',
  maxSize: 1,
  eagerLimitBytes: 256 * 1024,
  progressesInTest: true,
  async setup(size) {
    return localWorlds(size);
  },
});
