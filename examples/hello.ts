// Each rank says who it is, where it runs, and which transport reaches every peer.
//   npx vmcomm run -n 4 examples/hello.ts
import { hostname } from 'node:os';
import { init } from 'vmcomm';

const comm = await init();
const paths = Array.from({ length: comm.size }, (_, peer) => `${peer}:${comm.transportOf(peer)}`).join(' ');
console.log(`hello from rank ${comm.rank} of ${comm.size} on ${hostname()} (pid ${process.pid}) — ${paths}`);
await comm.finalize();
