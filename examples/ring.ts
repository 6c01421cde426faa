// A token goes round the ring `laps` times; each rank adds its rank to it.
//   npx vmcomm run -n 4 examples/ring.ts [laps]
import { init } from 'vmcomm';

const comm = await init();
const laps = Number(process.argv[2] ?? 3);
const next = (comm.rank + 1) % comm.size;
const prev = (comm.rank - 1 + comm.size) % comm.size;
const TAG = 1;

if (comm.rank === 0) {
  let token = 0n;
  for (let lap = 0; lap < laps; lap++) {
    await comm.send(token, next, TAG);
    token = await comm.recv<bigint>(prev, TAG);
    console.log(`lap ${lap + 1}: token ${token}`);
  }
  const expected = BigInt(laps * ((comm.size * (comm.size - 1)) / 2));
  console.log(token === expected ? `ring OK (${comm.size} ranks, ${laps} laps)` : `ring FAILED: ${token} != ${expected}`);
  if (token !== expected) process.exitCode = 1;
} else {
  for (let lap = 0; lap < laps; lap++) {
    const token = await comm.recv<bigint>(prev, TAG);
    await comm.send(token + BigInt(comm.rank), next, TAG);
  }
}
await comm.finalize();
