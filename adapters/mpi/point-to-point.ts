/**
 * Point-to-point calls in C argument order over vmcomm's buffer API (`sendBuffer`/`recvBuffer`):
 * bytes move straight from the sender's typed array into the receiver's, with no encoding.
 *
 * @module
 */

import { ANY_TAG } from 'vmcomm';
import { communicatorOf } from './comm.js';
import { bufferArgs, region } from './datatypes.js';
import { MPIRequest, PROC_NULL, Status } from './requests.js';

const PROC_NULL_STATUS = Object.freeze(new Status(PROC_NULL, ANY_TAG, 0)) as Status;

/** `MPI_Send`: resolves when `buf` may be changed again. */
export async function send(buf: ArrayBufferView, count: number, datatype: unknown, dest: number, tag: number, comm: unknown): Promise<void> {
  const data = region(buf, count, datatype, bufferArgs(''));
  const c = communicatorOf(comm);
  if (dest === PROC_NULL) return;
  await c.sendBuffer(data, dest, tag);
}

/**
 * `MPI_Recv` into the first `count` items of `buf`. A longer message is consumed and throws
 * `VmcommError` `'TRUNCATE'` (MPI's `MPI_ERR_TRUNCATE`), which carries its status.
 */
export async function recv(buf: ArrayBufferView, count: number, datatype: unknown, source: number, tag: number, comm: unknown): Promise<Status> {
  const data = region(buf, count, datatype, bufferArgs(''));
  const c = communicatorOf(comm);
  if (source === PROC_NULL) return PROC_NULL_STATUS;
  return Status.from(await c.recvBuffer(data, source, tag));
}

/** `MPI_Isend`: the request comes back at once; `buf` must stay unchanged until it completes. */
export function isend(buf: ArrayBufferView, count: number, datatype: unknown, dest: number, tag: number, comm: unknown): MPIRequest {
  const data = region(buf, count, datatype, bufferArgs(''));
  const c = communicatorOf(comm);
  return new MPIRequest('send', dest === PROC_NULL ? undefined : c.isendBuffer(data, dest, tag));
}

/** `MPI_Irecv`: the request comes back at once; its status tells the sender, tag and length. */
export function irecv(buf: ArrayBufferView, count: number, datatype: unknown, source: number, tag: number, comm: unknown): MPIRequest {
  const data = region(buf, count, datatype, bufferArgs(''));
  const c = communicatorOf(comm);
  return new MPIRequest('recv', source === PROC_NULL ? undefined : c.irecvBuffer(data, source, tag));
}

/** `MPI_Probe`: waits for a matching message without receiving it. */
export async function probe(source: number, tag: number, comm: unknown): Promise<Status> {
  const c = communicatorOf(comm);
  if (source === PROC_NULL) return PROC_NULL_STATUS;
  return Status.from(await c.probe(source, tag));
}

/**
 * `MPI_Iprobe`: `{ flag, status }`. A promise, like `Test`: a program looping on `Iprobe` must let
 * the event loop turn for socket transports to deliver anything.
 */
export async function iprobe(source: number, tag: number, comm: unknown): Promise<{ flag: boolean; status?: Status }> {
  const c = communicatorOf(comm);
  if (source === PROC_NULL) return { flag: true, status: PROC_NULL_STATUS };
  let st = c.iprobe(source, tag);
  if (st === undefined) {
    await new Promise((resolve) => setImmediate(resolve));
    st = c.iprobe(source, tag);
  }
  return st === undefined ? { flag: false } : { flag: true, status: Status.from(st) };
}

/** `MPI_Sendrecv`: both at once, so two ranks exchanging with each other never deadlock. */
export async function sendrecv(
  sendbuf: ArrayBufferView,
  sendcount: number,
  sendtype: unknown,
  dest: number,
  sendtag: number,
  recvbuf: ArrayBufferView,
  recvcount: number,
  recvtype: unknown,
  source: number,
  recvtag: number,
  comm: unknown,
): Promise<Status> {
  const out = region(sendbuf, sendcount, sendtype, bufferArgs('send'));
  const into = region(recvbuf, recvcount, recvtype, bufferArgs('recv'));
  const c = communicatorOf(comm);
  const sent = dest === PROC_NULL ? undefined : c.isendBuffer(out, dest, sendtag);
  try {
    return source === PROC_NULL ? PROC_NULL_STATUS : Status.from(await c.recvBuffer(into, source, recvtag));
  } finally {
    await sent;
  }
}

/** `MPI_Sendrecv_replace`: sends `buf`, then receives into it (through a copy of what is sent). */
export async function sendrecvReplace(
  buf: ArrayBufferView,
  count: number,
  datatype: unknown,
  dest: number,
  sendtag: number,
  source: number,
  recvtag: number,
  comm: unknown,
): Promise<Status> {
  const data = region(buf, count, datatype, bufferArgs(''));
  return sendrecv(data.slice(), count, datatype, dest, sendtag, data, count, datatype, source, recvtag, comm);
}
