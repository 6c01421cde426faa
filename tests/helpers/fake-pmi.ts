// An in-process PMI server for the unit tests (tests/unit/launch/pmi-*.test.ts): the part of Hydra's
// and Slurm's behaviour that vmcomm relies on, over TCP (what PMI_PORT gives; the clients reach it
// with a `{ kind: 'port' }` endpoint). Both wires on one port: a connection speaks PMI-1 until it
// sends `cmd=init pmi_version=2`, then PMI-2 (as Hydra and Slurm do).
//
// Like Hydra it cuts values to vallen_max − 1 characters without an error, answers a missing key
// with rc=-1, releases a fence once every rank entered it and only then makes puts visible, and
// closes a connection after finalize. `tamper` rewrites (or drops) a reply, to test malformed ones.
import { createServer, type Server, type Socket } from 'node:net';
import { PmiDecoder, type PmiMessage } from '../../lib/launch/pmi/pmi-wire.js';

export interface FakePmiOptions {
  readonly size: number;
  readonly kvsName?: string;
  /** Reported in get_maxes; PMI-1 values are cut to one less (PMI-2 ones to 1023). Default 1024. */
  readonly vallenMax?: number;
  /** Values are actually cut to this many characters (default vallenMax − 1): a lying server. */
  readonly cutAt?: number;
  readonly keylenMax?: number;
  /** Default `(vector,(0,1,<size>))`: every rank on one node. `null`: none. */
  readonly processMapping?: string | null;
  /** Never answer a fence (a rank that never arrives). */
  readonly holdFence?: boolean;
  /** Rewrites a reply (its text without framing) or drops it (`null`). */
  readonly tamper?: (request: PmiMessage, reply: string, rank: number | undefined) => string | null;
  /** PMI-2 fullinit answers rc=3 unless pmijobid is given (Slurm). */
  readonly requireJobId?: boolean;
}

export interface FakeAbort {
  readonly rank: number | undefined;
  readonly attrs: Record<string, string>;
}

export class FakePmiServer {
  readonly requests: { rank: number | undefined; cmd: string; attrs: Record<string, string> }[] = [];
  readonly aborts: FakeAbort[] = [];
  readonly finalized = new Set<number>();
  /** The longest value any put carried (before cutting). */
  longestPut = 0;
  private readonly kvs = new Map<string, string>();
  private pending = new Map<string, string>();
  private fenceWaiters: (() => void)[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly options: FakePmiOptions,
  ) {}

  static async start(options: FakePmiOptions): Promise<FakePmiServer> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const fake = new FakePmiServer(server, (server.address() as { port: number }).port, options);
    server.on('connection', (socket) => fake.serve(socket));
    return fake;
  }

  get kvsName(): string {
    return this.options.kvsName ?? 'kvs_fake_0';
  }

  /** The environment of the process with PMI id `id`. */
  env(id: number, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
    return { PMI_PORT: `127.0.0.1:${this.port}`, PMI_ID: String(id), ...extra };
  }

  /** Drops every connection (the process manager died). */
  dropAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  async close(): Promise<void> {
    this.dropAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => undefined);
    const decoder = new PmiDecoder();
    let rank: number | undefined;
    let wire: 1 | 2 = 1;
    const send = (request: PmiMessage, reply: string): void => {
      const text = this.options.tamper ? this.options.tamper(request, reply, rank) : reply;
      if (text === null || socket.destroyed) return;
      socket.write(wire === 2 && !text.startsWith('cmd=response_to_init') ? `${String(Buffer.byteLength(text)).padStart(6)}${text}` : `${text}\n`);
    };
    socket.on('data', (chunk: Buffer) => {
      let messages: PmiMessage[];
      try {
        messages = decoder.push(chunk);
      } catch {
        socket.destroy();
        return;
      }
      for (const m of messages) {
        const a = Object.fromEntries(m.attrs);
        this.requests.push({ rank, cmd: m.cmd, attrs: a });
        const { size } = this.options;
        const vallen = this.options.vallenMax ?? 1024;
        // PMI-1 keeps what get_maxes said; PMI-2 has a fixed PMI2_MAX_VALLEN of 1024 (NUL included).
        const cut = (v: string): string => v.slice(0, this.options.cutAt ?? (wire === 2 ? 1023 : vallen - 1));
        const lookup = (key: string): string | undefined =>
          key === 'PMI_process_mapping' ? (this.options.processMapping === null ? undefined : (this.options.processMapping ?? `(vector,(0,1,${size}))`)) : this.kvs.get(key);
        const fence = (reply: string): void => {
          if (this.options.holdFence) return;
          this.fenceWaiters.push(() => send(m, reply));
          if (this.fenceWaiters.length === size) {
            for (const [k, v] of this.pending) this.kvs.set(k, v);
            this.pending = new Map();
            for (const w of this.fenceWaiters.splice(0)) w();
          }
        };
        const put = (key: string, value: string): void => {
          this.longestPut = Math.max(this.longestPut, value.length);
          this.pending.set(key, cut(value));
        };
        switch (m.cmd) {
          // PMI-1, and the PMI-1 init of PMI-2
          case 'initack':
            rank = Number(a.pmiid);
            send(m, `cmd=initack`);
            send(m, `cmd=set size=${size}`);
            send(m, `cmd=set rank=${rank}`);
            send(m, `cmd=set debug=0`);
            break;
          case 'init':
            send(m, `cmd=response_to_init pmi_version=${a.pmi_version} pmi_subversion=${a.pmi_subversion} rc=0`);
            if (a.pmi_version === '2') {
              wire = 2;
              decoder.format = 2;
            }
            break;
          case 'get_maxes':
            send(m, `cmd=maxes kvsname_max=256 keylen_max=${this.options.keylenMax ?? 64} vallen_max=${vallen}`);
            break;
          case 'get_my_kvsname':
            send(m, `cmd=my_kvsname kvsname=${this.kvsName}`);
            break;
          case 'put':
            put(a.key!, a.value!);
            send(m, 'cmd=put_result rc=0 msg=success');
            break;
          case 'barrier_in':
            fence('cmd=barrier_out');
            break;
          case 'get': {
            const v = lookup(a.key!);
            send(m, v === undefined ? `cmd=get_result rc=-1 msg=key_${a.key}_not_found value=unknown` : `cmd=get_result rc=0 msg=success value=${v}`);
            break;
          }
          case 'finalize':
            if (rank !== undefined) this.finalized.add(rank);
            send(m, wire === 2 ? 'cmd=finalize-response;rc=0;' : 'cmd=finalize_ack');
            socket.end();
            break;
          case 'abort':
            this.aborts.push({ rank, attrs: a });
            break;
          // PMI-2
          case 'fullinit':
            rank = Number(a.pmirank);
            send(
              m,
              this.options.requireJobId && a.pmijobid === undefined
                ? `cmd=fullinit-response;rc=3;rank=${rank};size=${size};`
                : `cmd=fullinit-response;rc=0;pmi-version=2;pmi-subversion=0;rank=${rank};size=${size};appnum=-1;debugged=FALSE;pmiverbose=FALSE;`,
            );
            break;
          case 'job-getid':
            send(m, `cmd=job-getid-response;rc=0;jobid=${this.kvsName};`);
            break;
          case 'info-getjobattr': {
            const v = lookup(a.key!);
            send(m, v === undefined ? 'cmd=info-getjobattr-response;rc=0;found=FALSE;' : `cmd=info-getjobattr-response;rc=0;found=TRUE;value=${v};`);
            break;
          }
          case 'kvs-put':
            put(a.key!, a.value!);
            send(m, 'cmd=kvs-put-response;rc=0;');
            break;
          case 'kvs-fence':
            fence('cmd=kvs-fence-response;rc=0;');
            break;
          case 'kvs-get': {
            const v = this.kvs.get(a.key!);
            send(m, v === undefined ? 'cmd=kvs-get-response;rc=0;found=FALSE;' : `cmd=kvs-get-response;rc=0;found=TRUE;value=${v};`);
            break;
          }
          default:
            send(m, wire === 2 ? `cmd=${m.cmd}-response;rc=-1;errmsg=unknown;` : `cmd=${m.cmd}_result rc=-1 msg=unknown`);
        }
      }
    });
  }
}
