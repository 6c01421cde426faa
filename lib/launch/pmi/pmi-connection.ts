/**
 * The byte-moving half of a PMI client: one socket to the process manager, carrying requests and
 * their replies strictly in order (PMI has no request ids: the n-th reply answers the n-th request).
 * The parsing half is `pmi-wire.ts`; the commands are in `pmi1-client.ts` and `pmi2-client.ts`.
 *
 * ## The socket
 *
 * - `PMI_FD` (Hydra's default, Slurm's `--mpi=pmi2`): one end of a `socketpair()` the process
 *   manager left open across `exec`. `net.Socket({ fd })` adopts it (libuv makes it non-blocking, so
 *   the event loop is never blocked); closing the connection closes the fd.
 * - `PMI_PORT` (`mpiexec -pmi-port`): a TCP `host:port` of the local proxy.
 *
 * ## Liveness and failure
 *
 * The socket is referenced only while a reply is awaited (or a final message is being flushed), so an
 * idle PMI connection never keeps a finished program alive — as with the rendezvous connection.
 *
 * Every reply has a deadline (`timeoutMs`, from `VMCOMM_PMI_TIMEOUT`). A late reply would pair with
 * the wrong request, so a missed deadline, an unexpected reply or a malformed one ends the connection:
 * the pending and every later request reject with that error (`TIMEOUT`, `CORRUPT`). When the process
 * manager closes the socket first, they reject with `PEER_LOST` and `lost` handlers hear it — unless
 * {@link PmiConnection.close} was called first (after `finalize` the process manager closes its end
 * too, and that is no loss).
 *
 * @module
 */

import { connect as netConnect, Socket } from 'node:net';
import { VmcommError } from '../../errors.js';
import { PmiDecoder, type PmiMessage, type PmiWire } from './pmi-wire.js';

/** Where the process manager is. */
export type PmiEndpoint =
  /** An inherited socket (`PMI_FD`). */
  | { readonly kind: 'fd'; readonly fd: number }
  /** The proxy's TCP port (`PMI_PORT`). */
  | { readonly kind: 'port'; readonly host: string; readonly port: number };

/** How long a final message (abort, finalize) may take to be flushed before the connection is dropped. */
const FLUSH_MS = 5_000;

interface Waiter {
  readonly expect: readonly string[];
  readonly what: string;
  resolve(message: PmiMessage): void;
  reject(error: VmcommError): void;
  timer: NodeJS.Timeout | undefined;
}

/** A connection to the PMI process manager. Build it with {@link PmiConnection.open}. */
export class PmiConnection {
  /** For messages: `PMI_FD=6` or `PMI_PORT=host:port`. */
  readonly where: string;
  private readonly decoder = new PmiDecoder();
  private readonly waiters: Waiter[] = [];
  private closedWith: VmcommError | undefined;
  private closing = false;
  private holds = 0;
  private readonly lostHandlers: ((error: VmcommError) => void)[] = [];

  private constructor(
    private readonly socket: Socket,
    where: string,
    /** Deadline of every reply in ms; `undefined` waits forever. */
    private readonly timeoutMs: number | undefined,
  ) {
    this.where = where;
    socket.setNoDelay?.(true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // Without an 'error' listener a reset would crash the process; 'close' always follows.
    let socketError: Error | undefined;
    socket.on('error', (error) => (socketError ??= error));
    socket.on('close', () => {
      const why = socketError === undefined ? 'it closed the connection' : socketError.message;
      this.fail(
        new VmcommError('PEER_LOST', `lost the connection to the PMI process manager (${this.where}: ${why})`, socketError === undefined ? undefined : { cause: socketError }),
        true,
      );
    });
    socket.unref();
  }

  /**
   * Adopts `PMI_FD` or connects to `PMI_PORT`. Rejects with `INVALID_ARGUMENT` naming the variable
   * when the fd is not an open socket or the host cannot be resolved, `PEER_LOST` when the port
   * refuses, `TIMEOUT` when connecting takes longer than `timeoutMs`.
   */
  static async open(endpoint: PmiEndpoint, timeoutMs: number | undefined): Promise<PmiConnection> {
    if (endpoint.kind === 'fd') {
      const where = `PMI_FD=${endpoint.fd}`;
      let socket: Socket;
      try {
        socket = new Socket({ fd: endpoint.fd, readable: true, writable: true });
      } catch (cause) {
        throw new VmcommError(
          'INVALID_ARGUMENT',
          `${where} is not an open socket in this process (${(cause as Error).message}); PMI_FD must be the descriptor the process manager (mpiexec, srun --mpi=pmi2) left open — ` +
            `a process that inherited PMI_FD from a rank but not the descriptor cannot join through it`,
          { cause },
        );
      }
      return new PmiConnection(socket, where, timeoutMs);
    }
    const where = `PMI_PORT=${endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host}:${endpoint.port}`;
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = netConnect({ host: endpoint.host, port: endpoint.port });
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              s.destroy();
              reject(new VmcommError('TIMEOUT', `could not connect to the PMI process manager at ${where} within ${timeoutMs / 1000} s`));
            }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        s.removeAllListeners('error');
        resolve(s);
      });
      s.once('error', (error: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        const code = error.code === 'ENOTFOUND' || error.code === 'EAI_AGAIN' ? 'INVALID_ARGUMENT' : 'PEER_LOST';
        reject(new VmcommError(code, `could not connect to the PMI process manager at ${where}: ${error.message}`, { cause: error }));
      });
    });
    return new PmiConnection(socket, where, timeoutMs);
  }

  /** The framing of the next reply (a PMI-2 client switches to 2 after its PMI-1 `init`). */
  get wire(): PmiWire {
    return this.decoder.format;
  }
  set wire(format: PmiWire) {
    this.decoder.format = format;
  }

  /** The local address of a `PMI_PORT` connection; `undefined` for an inherited unix socket. */
  get localAddress(): string | undefined {
    return this.socket.localAddress;
  }

  /** True once the connection ended (closed, broken, timed out). */
  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Called once when the connection breaks without {@link close} (never after it). */
  onLost(handler: (error: VmcommError) => void): void {
    this.lostHandlers.push(handler);
  }

  /**
   * Sends an encoded request and resolves with the next message, whose `cmd` must be one of
   * `expect`. `what` names the request in errors.
   */
  request(text: string, expect: string | readonly string[], what: string): Promise<PmiMessage> {
    const reply = this.receive(expect, what);
    if (this.closedWith === undefined) this.socket.write(text);
    return reply;
  }

  /** Resolves with the next message without sending anything (the extra lines of some replies). */
  receive(expect: string | readonly string[], what: string): Promise<PmiMessage> {
    if (this.closedWith !== undefined) return Promise.reject(this.closedWith);
    return new Promise<PmiMessage>((resolve, reject) => {
      const waiter: Waiter = {
        expect: typeof expect === 'string' ? [expect] : expect,
        what,
        resolve: (message) => {
          this.release();
          resolve(message);
        },
        reject: (error) => {
          this.release();
          reject(error);
        },
        timer: undefined,
      };
      if (this.timeoutMs !== undefined) {
        const ms = this.timeoutMs;
        waiter.timer = setTimeout(
          () =>
            this.fail(
              new VmcommError(
                'TIMEOUT',
                `the PMI process manager (${this.where}) did not answer ${what} within ${ms / 1000} s` +
                  `${what.includes('barrier') || what.includes('fence') ? ' — a rank of the job never reached it (it died, or never started)' : ''}; ` +
                  `VMCOMM_PMI_TIMEOUT sets this limit in seconds (0: wait forever)`,
              ),
            ),
          ms,
        );
      }
      this.hold();
      this.waiters.push(waiter);
    });
  }

  /**
   * Sends a message that has no reply (abort) and resolves once it was handed to the kernel, the
   * connection is gone, or 5 s passed. Never rejects.
   */
  async sendOnly(text: string): Promise<void> {
    if (this.closedWith !== undefined || this.socket.destroyed) return;
    this.hold();
    let timer: NodeJS.Timeout | undefined;
    let onClose: (() => void) | undefined;
    try {
      await new Promise<void>((resolve) => {
        onClose = resolve;
        timer = setTimeout(resolve, FLUSH_MS);
        this.socket.once('close', onClose);
        this.socket.write(text, () => resolve());
      });
    } finally {
      clearTimeout(timer);
      if (onClose !== undefined) this.socket.off('close', onClose);
      this.release();
    }
  }

  /** Ends the connection normally: pending requests reject with `FINALIZED`; `lost` is not called. */
  close(): void {
    this.closing = true;
    this.fail(new VmcommError('FINALIZED', `the PMI connection (${this.where}) was closed`));
  }

  // -------------------------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.closedWith !== undefined) return;
    let messages: PmiMessage[];
    try {
      messages = this.decoder.push(chunk);
    } catch (error) {
      this.fail(error as VmcommError);
      return;
    }
    for (const message of messages) {
      const waiter = this.waiters.shift();
      if (waiter === undefined) {
        this.fail(new VmcommError('CORRUPT', `the PMI process manager (${this.where}) sent '${message.cmd}' when no reply was expected`));
        return;
      }
      clearTimeout(waiter.timer);
      if (!waiter.expect.includes(message.cmd)) {
        const error = new VmcommError('CORRUPT', `the PMI process manager (${this.where}) answered ${waiter.what} with '${message.cmd}' (expected '${waiter.expect.join("' or '")}')`);
        waiter.reject(error);
        this.fail(error);
        return;
      }
      waiter.resolve(message);
    }
  }

  /**
   * Ends the connection with `error`: every waiter rejects with it. `lost` handlers hear it only when
   * the far end went away (`farEnd`) — a deadline or a malformed reply is reported through the
   * request that saw it, and a rank should not be ended for it.
   */
  private fail(error: VmcommError, farEnd = false): void {
    if (this.closedWith !== undefined) return;
    this.closedWith = error;
    for (const waiter of this.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    if (this.closing) {
      // A normal end: let the kernel send what is queued, then drop the socket.
      this.socket.end();
      setTimeout(() => this.socket.destroy(), 1_000).unref();
    } else {
      this.socket.destroy();
      if (farEnd) for (const handler of this.lostHandlers.splice(0)) handler(error);
    }
  }

  private hold(): void {
    if (this.holds++ === 0) this.socket.ref();
  }

  private release(): void {
    if (--this.holds === 0) this.socket.unref();
  }
}
