/**
 * The address a rank started by a PMI process manager binds its tcp listener to and publishes in its
 * card (the `address` of its {@link Bootstrap}).
 *
 * Under `vmcomm run` that is the local address of the socket that reached the rendezvous. A PMI rank
 * talks to a *local* proxy (Hydra's `hydra_pmi_proxy`, Slurm's `slurmstepd`) over a `socketpair`,
 * which has no address, so the choice is made from what the process manager says, in this order:
 *
 * 1. `VMCOMM_ADDRESS` (an IPv4/IPv6 literal of this host): the user knows best.
 * 2. `127.0.0.1` when `PMI_process_mapping` proves every rank runs on one node. A node is one Hydra
 *    proxy (it forks all of its ranks: same host, same network namespace) or one Slurm node.
 * 3. Slurm: the source address of this host's route toward `srun` (`SLURM_SRUN_COMM_HOST`, else
 *    `SLURM_LAUNCH_NODE_IPADDR`) — the address through which this rank reaches its launcher, as under
 *    `vmcomm run`. Found by `connect()`ing a UDP socket, which sends nothing.
 * 4. Hydra: the name mpiexec gave this host (`PMI_HOSTNAME`, or `MPIR_CVAR_CH3_INTERFACE_HOSTNAME`
 *    before MPICH 4.2: the `-hosts`/hostfile entry, or the address of `-iface`'s interface), which is
 *    what MPICH itself publishes — an address literal as is, a name resolved, skipping loopback
 *    answers (Debian maps the host name to 127.0.1.1) and anything this host cannot bind.
 * 5. The local address of a `PMI_PORT` connection when it is not loopback.
 *
 * Nothing here reads `os.networkInterfaces()` (DESIGN §4). When none applies the job cannot use tcp
 * between hosts, and joining fails with `UNSUPPORTED` saying what to set.
 *
 * @module
 */

import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { createServer, isIP } from 'node:net';
import { VmcommError } from '../../errors.js';

/** The variable that overrides the choice. */
export const ADDRESS_VARIABLE = 'VMCOMM_ADDRESS';

/** What {@link choosePmiAddress} decides from. */
export interface AddressInputs {
  readonly env: NodeJS.ProcessEnv;
  readonly size: number;
  /** `PMI_process_mapping` as the process manager gave it, if it did. */
  readonly processMapping: string | undefined;
  /** The local address of a `PMI_PORT` connection. */
  readonly pmiLocalAddress: string | undefined;
}

/** The address and why it was chosen (for `vmcomm info` and debugging). */
export interface ChosenAddress {
  readonly address: string;
  readonly reason: string;
}

/** Chooses the address (see the module comment). Rejects with `INVALID_ARGUMENT` or `UNSUPPORTED`. */
export async function choosePmiAddress(inputs: AddressInputs): Promise<ChosenAddress> {
  const { env } = inputs;
  const given = env[ADDRESS_VARIABLE];
  if (given !== undefined && given !== '') {
    const address = given.trim().replace(/^\[(.*)\]$/, '$1');
    if (isIP(address) === 0) {
      throw new VmcommError('INVALID_ARGUMENT', `${ADDRESS_VARIABLE} must be an IPv4 or IPv6 address of this host (what the other ranks dial), got ${JSON.stringify(given)}`);
    }
    return { address, reason: ADDRESS_VARIABLE };
  }
  if (singleNode(inputs.processMapping, inputs.size)) return { address: '127.0.0.1', reason: `PMI_process_mapping ${inputs.processMapping}: every rank on one node` };

  for (const name of ['SLURM_SRUN_COMM_HOST', 'SLURM_LAUNCH_NODE_IPADDR']) {
    const target = env[name];
    if (target === undefined || isIP(target) === 0) continue;
    const source = await routeSource(target);
    if (source !== undefined && !isLoopback(source)) return { address: source, reason: `the route toward srun (${name}=${target})` };
  }

  for (const name of ['PMI_HOSTNAME', 'MPIR_CVAR_CH3_INTERFACE_HOSTNAME']) {
    const host = env[name];
    if (host === undefined || host === '') continue;
    const candidates = isIP(host) !== 0 ? [host] : await resolve(host);
    for (const candidate of candidates) {
      if (!isLoopback(candidate) && (await canBind(candidate))) return { address: candidate, reason: `${name}=${host}` };
    }
  }

  if (inputs.pmiLocalAddress !== undefined && isIP(inputs.pmiLocalAddress) !== 0 && !isLoopback(inputs.pmiLocalAddress)) {
    return { address: inputs.pmiLocalAddress, reason: 'the local address of the PMI_PORT connection' };
  }

  throw new VmcommError(
    'UNSUPPORTED',
    `the ranks of this job run on several nodes (PMI_process_mapping ${inputs.processMapping ?? 'not given'}) and nothing names this host's address for them: ` +
      `set ${ADDRESS_VARIABLE} to this host's address on the network the ranks share (e.g. mpiexec -genv ${ADDRESS_VARIABLE} … per host, or a wrapper script), ` +
      `or run mpiexec with -iface <interface>, or list the hosts by address (-hosts 10.0.0.1,10.0.0.2)`,
  );
}

/**
 * True when `mapping` (`(vector,(start,nodes,ppn),…)`, MPICH's PMI_process_mapping) places every one
 * of `size` ranks on node 0. Conservative: anything it cannot read, or any block naming another node,
 * is `false` (the caller then looks for a routable address, which also works on one node).
 */
export function singleNode(mapping: string | undefined, size: number): boolean {
  if (mapping === undefined) return false;
  const text = mapping.replace(/\s+/g, '');
  // The whole string: (vector, then one or more blocks, optionally inside MPICH's [ … ]xN repeat.
  if (!/^\(vector(,\[?\(\d+,\d+,\d+\)\]?(x\d+)?)+\)$/.test(text)) return false;
  const blocks = [...text.matchAll(/\((\d+),(\d+),(\d+)\)/g)].map((m) => [Number(m[1]), Number(m[2]), Number(m[3])] as const);
  let placed = 0;
  for (const [start, nodes, perNode] of blocks) {
    if (nodes === 0 || perNode === 0) continue;
    if (start !== 0 || nodes !== 1) return false;
    placed += perNode;
  }
  // MPICH repeats the blocks until every rank is placed; with only node 0 in them, all land there.
  return placed > 0 && size >= 1;
}

/** The source address the kernel would use toward `target`, or `undefined` when there is no route. */
export async function routeSource(target: string): Promise<string | undefined> {
  const socket = createSocket(isIP(target) === 6 ? 'udp6' : 'udp4');
  try {
    return await new Promise<string | undefined>((resolve) => {
      socket.once('error', () => resolve(undefined));
      // connect() on UDP only picks the route (and the source address); nothing is sent.
      socket.connect(9, target, (error?: Error) => {
        if (error) {
          resolve(undefined);
          return;
        }
        try {
          resolve(socket.address().address);
        } catch {
          resolve(undefined);
        }
      });
    });
  } finally {
    socket.close();
  }
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

async function resolve(host: string): Promise<string[]> {
  try {
    return (await lookup(host, { all: true })).map((a) => a.address);
  } catch {
    return [];
  }
}

/** True when a tcp listener could bind `address` here (it is one of this host's addresses). */
function canBind(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: address, port: 0, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
