/**
 * The composition root. The core never imports a transport: the built-in ones are loaded here, by
 * name, and bound — with any plug-ins from `init({ backends })` — as multi-bindings of one token.
 * inversify stays inside this file and the `@inject` decorators of `World`; plug-in authors see only
 * `vmcomm/backend` and `init({ backends })`.
 *
 * @module
 */

import 'reflect-metadata';
import { Container } from 'inversify';
import type { BackendFactory } from './backend.js';
import type { Bootstrap } from './bootstrap.js';
import type { ParsedOptions } from './options.js';
import { TOKENS } from './tokens.js';
import { World } from './world.js';

/**
 * The built-in transports, loaded on first `init()` so a program pays only for what it starts.
 */
const BUILT_IN: readonly (() => Promise<BackendFactory>)[] = [
  async () => (await import('../backends/self/index.js')).self(),
  async () => (await import('../backends/threads/index.js')).threads(),
  async () => (await import('../backends/shm/index.js')).shm(),
  async () => (await import('../backends/ivshmem/index.js')).ivshmem(),
  async () => (await import('../backends/tcp/index.js')).tcp(),
];

let builtIns: Promise<BackendFactory[]> | undefined;

/** Loads the built-in transport factories (once per isolate). */
export function builtInBackends(): Promise<BackendFactory[]> {
  return (builtIns ??= Promise.all(BUILT_IN.map((load) => load())));
}

/** Builds a container for one world and returns the (not yet started) world. */
export async function composeWorld(options: ParsedOptions, bootstrap: Bootstrap): Promise<World> {
  const container = new Container();
  container.bind<ParsedOptions>(TOKENS.Options).toConstantValue(options);
  container.bind<Bootstrap>(TOKENS.Bootstrap).toConstantValue(bootstrap);
  // Plug-ins first: when a plug-in reuses a built-in's name, the plug-in replaces it.
  for (const f of [...options.backends, ...(await builtInBackends())]) container.bind<BackendFactory>(TOKENS.BackendFactory).toConstantValue(f);
  container.bind(World).toSelf().inSingletonScope();
  return container.get(World);
}
