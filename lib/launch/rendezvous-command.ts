/**
 * `vmcomm rendezvous`: serves the rendezvous of a job whose ranks are started by something else
 * (a script, another host, a container runtime). It prints, on stdout, the variables the ranks need:
 *
 * ```text
 * VMCOMM_RENDEZVOUS=127.0.0.1:41234
 * VMCOMM_JOB_SECRET=9f…
 * VMCOMM_JOB_ID=3c…
 * VMCOMM_SIZE=4
 * ```
 *
 * (each rank adds its own `VMCOMM_RANK`), then lives until every rank finalized (exit 0). When a rank
 * is lost or aborts, it waits until the ranks still connected disconnect, or the grace period ends,
 * and exits non-zero (the abort code, else 1); closing the rendezvous ends the remaining ranks,
 * which see their launcher connection break. SIGINT/SIGTERM/SIGHUP send every rank an abort and
 * exit 128 + the signal number.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import type { RendezvousAddress } from './address.js';
import { deriveJobId, ENV, formatRendezvousAddress } from './environment.js';
import type { LineSink } from './line-forwarder.js';
import { RendezvousServer } from './rendezvous-server.js';

/** What `vmcomm rendezvous` was asked to do. */
export interface RendezvousCommandOptions {
  /** Ranks in the job. */
  readonly size: number;
  /** Where to listen (port 0: a random port). */
  readonly bind: RendezvousAddress;
  /** After a failure, how long connected ranks get to disconnect before the rendezvous closes (ms). */
  readonly graceMs: number;
}

const TAG = 'vmcomm rendezvous';

/** Serves one job; resolves with the exit status. Rejects only when it cannot listen. */
export async function serveRendezvous(options: RendezvousCommandOptions, out: { stdout: LineSink; stderr: LineSink }): Promise<number> {
  const say = (message: string): void => out.stderr.write(Buffer.from(`${TAG}: ${message}\n`, 'utf8'));
  const secret = randomBytes(32);
  const jobId = deriveJobId(secret);
  const server = new RendezvousServer({ size: options.size, jobId, secret });
  const address = await server.listen({ host: options.bind.host, port: options.bind.port });

  out.stdout.write(
    Buffer.from(
      `${ENV.rendezvous}=${formatRendezvousAddress(address)}\n` +
        `${ENV.secret}=${secret.toString('hex')}\n` +
        `${ENV.jobId}=${jobId}\n` +
        `${ENV.size}=${options.size}\n`,
      'utf8',
    ),
  );
  if (address.host === '0.0.0.0' || address.host === '::') {
    say(`listening on every interface; give ranks on other hosts this host's address instead of ${address.host}`);
  }

  let joined = 0;
  let status: number | undefined;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => {
    resolveDone = resolve;
  });
  let graceTimer: NodeJS.Timeout | undefined;

  /** The job failed (or was interrupted): leave once every connected rank is gone, or after the grace. */
  const wind = (exitStatus: number): void => {
    if (status !== undefined) return;
    status = exitStatus;
    if (server.connectedCount === 0) {
      resolveDone();
      return;
    }
    graceTimer = setTimeout(() => {
      say(`closing with ${server.connectedCount} rank(s) still connected ${options.graceMs / 1000} s after the failure`);
      resolveDone();
    }, options.graceMs);
  };

  server.on('joined', () => {
    joined += 1;
    if (joined === options.size) say(`all ${options.size} ranks joined`);
  });
  server.on('refused', (remote, code, message) => say(`refused a connection from ${remote} (${code}): ${message}`));
  server.on('lost', (_rank, reason) => {
    say(`lost: ${reason}`);
    wind(1);
  });
  server.on('abort', (code, fromRank, reason) => {
    if (fromRank !== -1) say(`rank ${fromRank} aborted the job with code ${code}${reason === '' ? '' : `: ${reason}`}`);
    wind(Number.isInteger(code) && code >= 0 && code <= 255 ? code : 1);
  });
  server.on('disconnected', () => {
    if (status !== undefined && server.connectedCount === 0) resolveDone();
  });
  server.on('all-finalized', () => {
    say(`all ${options.size} ranks finalized`);
    status ??= 0;
    resolveDone();
  });

  let signalStatus: number | undefined;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (signalStatus !== undefined) {
      // A second signal: leave now.
      resolveDone();
      return;
    }
    signalStatus = 128 + (osConstants.signals[signal] ?? 0);
    say(`received ${signal}; aborting the job`);
    // Hand-started ranks are not our children: an abort through the rendezvous is how to stop them.
    server.abort(signalStatus, `vmcomm rendezvous received ${signal}`);
    wind(signalStatus);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  try {
    await done;
  } finally {
    clearTimeout(graceTimer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    await server.close();
  }
  return signalStatus ?? status ?? 1;
}
