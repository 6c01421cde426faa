import { initWithBootstrap } from '../../lib/start-world.js';
import { createLocalJob } from '../../lib/local-bootstrap.js';
import { backendSuite } from './suite.js';

// A world of one: every message is a message to oneself.
backendSuite({
  transport: 'self',
  maxSize: 1,
  eagerLimitBytes: 256 * 1024,
  progressesInTest: true,
  async setup(size) {
    return Promise.all(createLocalJob(size).map((b) => initWithBootstrap(b)));
  },
});
