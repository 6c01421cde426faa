#!/usr/bin/env node
// Two builds of vmcomm against each other, in the same two pinned processes: each process loads
// both builds and starts one world of each over `shm`, and blocks of 8-byte ping-pongs alternate
// between the two worlds (which one goes first alternates too). Why: on this kind of virtual
// machine the cost of moving a cache line between the vCPUs changes while one watches (see
// bench/versus-mpi.mjs), so two separate runs of a few per cent apart say nothing; blocks a
// fraction of a millisecond apart see the same machine. Reports each build's median block time and
// B/A, the median over rounds of B's block ÷ A's block (< 1: B faster), with its quartiles.
//
//   node bench/ab-builds.mjs DIR_A DIR_B [--rounds R] [--block N] [--warm W] [--size BYTES] [--timeout S]
//
// DIR_A, DIR_B: vmcomm checkouts whose `dist/` and `build/` are built (`npm run build`, the addon).
// A git worktree of another commit serves as one: `git worktree add /tmp/base REV`, then in it
// `ln -s "$OLDPWD/node_modules" . && cp -r "$OLDPWD/build" . && npx tsc -p tsconfig.build.json`.
// Needs 2 cores (the ranks are bound to cores 0 and 1) and the native addon. A run that times out
// (--timeout, default 300 s) or fails ends both ranks; shared-memory files they leave behind go with
// `npx vmcomm clean`.
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const usage = 'usage: node bench/ab-builds.mjs DIR_A DIR_B [--rounds R] [--block N] [--warm W] [--size BYTES] [--timeout S]';
const OPTIONS = { '--rounds': 'rounds', '--block': 'block', '--warm': 'warm', '--size': 'size', '--timeout': 'timeout' };

function parse(argv) {
  const dirs = [];
  const o = { rounds: 2000, block: 100, warm: 4000, size: 8, timeout: 300 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--help' || a === '-h') {
      console.log(usage);
      process.exit(0);
    }
    const key = OPTIONS[a];
    if (key === undefined) {
      if (a.startsWith('-')) throw new Error(`unknown option ${a}; ${usage}`);
      dirs.push(a);
      continue;
    }
    const v = Number(argv[++i]);
    if (!Number.isInteger(v) || v < (key === 'size' || key === 'warm' ? 0 : 1)) throw new Error(`${a} takes a whole number${key === 'size' || key === 'warm' ? '' : ' ≥ 1'}, got ${argv[i]}`);
    o[key] = v;
  }
  if (dirs.length !== 2) throw new Error(usage);
  o.dirs = dirs.map((d) => path.resolve(d));
  for (const d of o.dirs) {
    if (!existsSync(path.join(d, 'dist', 'lib', 'start-world.js'))) throw new Error(`${d} has no built dist/ (npm run build there)`);
  }
  return o;
}

if (process.argv[2] !== '--rank') {
  let o;
  try {
    o = parse(process.argv.slice(2));
  } catch (e) {
    console.error(`ab-builds: ${e.message}`);
    process.exit(2);
  }
  const jobs = o.dirs.map(() => ({ id: `ab-${randomBytes(6).toString('hex')}`, secret: randomBytes(32), rounds: new Map() }));
  const self = fileURLToPath(import.meta.url);
  const ranks = [0, 1].map((r) => fork(self, ['--rank', String(r), JSON.stringify(o)], { serialization: 'advanced', stdio: 'inherit' }));
  const endAll = () => {
    for (const k of ranks) if (k.exitCode === null && k.signalCode === null) k.kill();
  };
  // A build that deadlocks would leave both ranks waiting for each other: a deadline ends the run.
  const deadline = setTimeout(() => {
    console.error(`ab-builds: no result within ${o.timeout} s (--timeout); ending the ranks`);
    endAll();
  }, o.timeout * 1000);
  // Sending to a rank that has just ended raises 'error' here: the run is over then.
  const ignoreGone = () => undefined;
  // The bootstrap exchange of each world goes through this process (one allgather per round name).
  for (const k of ranks) {
    k.on('message', (m) => {
      const job = jobs[m.build];
      let round = job.rounds.get(m.round);
      if (round === undefined) job.rounds.set(m.round, (round = { values: [], n: 0 }));
      round.values[m.rank] = m.value;
      if (++round.n < 2) return;
      job.rounds.delete(m.round);
      for (const kk of ranks) if (kk.connected) kk.send({ build: m.build, round: m.round, values: round.values }, ignoreGone);
    });
    k.on('error', endAll);
  }
  for (const k of ranks) k.send({ jobs: jobs.map((j) => ({ id: j.id, secret: j.secret })) }, ignoreGone);
  const codes = await Promise.all(
    ranks.map(
      (k) =>
        new Promise((resolve) =>
          k.on('exit', (code, signal) => {
            // A rank that failed leaves the other waiting for it: end that one too.
            if (code !== 0) endAll();
            resolve(code ?? (signal ? 1 : 0));
          }),
        ),
    ),
  );
  clearTimeout(deadline);
  process.exit(codes.some((c) => c !== 0) ? 1 : 0);
} else {
  const rank = Number(process.argv[3]);
  const o = JSON.parse(process.argv[4]);
  const { jobs } = await new Promise((resolve) => process.once('message', resolve));
  const waiting = new Map();
  process.on('message', (m) => {
    const key = `${m.build}/${m.round}`;
    waiting.get(key)?.(m.values);
    waiting.delete(key);
  });
  const comms = [];
  for (let build = 0; build < o.dirs.length; build++) {
    const dist = (p) => pathToFileURL(path.join(o.dirs[build], 'dist', p)).href;
    const { initWithBootstrap } = await import(dist('lib/start-world.js'));
    const { shm } = await import(dist('backends/shm/index.js'));
    const bootstrap = {
      rank,
      size: 2,
      jobId: jobs[build].id,
      secret: jobs[build].secret,
      address: '127.0.0.1',
      allgather: (round, value) =>
        new Promise((resolve) => {
          waiting.set(`${build}/${round}`, resolve);
          process.send({ build, rank, round, value });
        }),
      listen() {},
      async abort() {},
      async finalize() {},
    };
    comms.push(await initWithBootstrap(bootstrap, { backends: [shm()], only: ['shm'] }));
  }
  const { tryLoadNative } = await import(pathToFileURL(path.join(o.dirs[0], 'dist', 'backends', 'native', 'native.js')).href);
  tryLoadNative().addon?.setAffinity([rank], 'process');
  const peer = 1 - rank;
  const buf = new Uint8Array(o.size);
  async function block(comm, n) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      if (rank === 0) {
        await comm.sendBuffer(buf, peer, 1);
        await comm.recvBuffer(buf, peer, 1);
      } else {
        await comm.recvBuffer(buf, peer, 1);
        await comm.sendBuffer(buf, peer, 1);
      }
    }
    return ((performance.now() - t0) * 1000) / n / 2;
  }
  // Counts, not deadlines, everywhere: both ranks must run the same blocks.
  for (let k = 0; k < o.warm; k++) for (const c of comms) await block(c, o.block);
  const times = [[], []];
  for (let k = 0; k < o.rounds; k++) {
    for (let v = 0; v < 2; v++) {
      const build = k & 1 ? 1 - v : v;
      times[build].push(await block(comms[build], o.block));
    }
  }
  if (rank === 0) {
    const quantile = (a, q) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor(q * a.length))];
    const [ma, mb] = times.map((t) => quantile(t, 0.5));
    const ratios = times[0].map((a, i) => times[1][i] / a);
    const transport = comms.map((c) => c.transportOf(peer)).join('/');
    console.log(`ab-builds: ${o.size}-byte half round trip over ${transport}, ${o.rounds} rounds of ${o.block}`);
    console.log(`  A ${o.dirs[0]}: ${ma.toFixed(3)} µs`);
    console.log(`  B ${o.dirs[1]}: ${mb.toFixed(3)} µs`);
    console.log(`  B/A ${quantile(ratios, 0.5).toFixed(3)} (quartiles ${quantile(ratios, 0.25).toFixed(3)}–${quantile(ratios, 0.75).toFixed(3)})`);
  }
  for (const c of comms) await c.finalize();
  process.exit(0);
}
