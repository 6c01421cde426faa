// A bare Node TCP socket between the two ranks of a benchmark job (the baseline vmcomm is compared
// with): rank 0 listens on loopback and sends the port over vmcomm, rank 1 connects.
import { once } from 'node:events';
import net from 'node:net';
import type { Communicator } from 'vmcomm';

/** Connects ranks 0 and 1 of `comm` with a loopback TCP socket (uses tag 1 once, from rank 0 to 1). */
export async function bareSocket(comm: Communicator): Promise<net.Socket> {
  let socket: net.Socket;
  if (comm.rank === 0) {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    await comm.send((server.address() as net.AddressInfo).port, 1, 1);
    [socket] = (await once(server, 'connection')) as [net.Socket];
    server.close();
  } else {
    socket = net.connect(await comm.recv<number>(0, 1), '127.0.0.1');
    await once(socket, 'connect');
  }
  return socket;
}
