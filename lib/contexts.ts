/**
 * Context ids: every communicator owns {@link CONTEXTS_PER_COMM} consecutive ids starting at a
 * multiple of that number (inside a {@link CONTEXT_BLOCK} of its own), one per kind of traffic, so a collective's messages can never match a
 * point-to-point receive (MPI's separate matching contexts) and revoke notices never match either.
 * The world communicator starts at 0.
 *
 * In the collective context a tag is a *key*: the collective's number on its communicator, with a
 * short hash of the call's arguments in the low {@link ARGUMENT_HASH_BITS} bits. Matching compares
 * the number only; the receiver then compares the hash, so ranks that called a collective with
 * different arguments learn it (`INVALID_ARGUMENT`) instead of exchanging wrong data or hanging.
 *
 * @module
 */

/** Context ids per communicator (its point-to-point, collective and control contexts, one spare). */
export const CONTEXTS_PER_COMM = 4;
/**
 * Context ids each communicator reserves: its own four, then four for each of the two internal
 * communicators of its locality-aware collectives (`LOCAL_SUBCOMM`, `LEADERS_SUBCOMM`) and four for
 * its side communicator (`SIDE_SUBCOMM`), which are thereby made without any communication. A multiple of {@link CONTEXTS_PER_COMM}.
 */
export const CONTEXT_BLOCK = 16;
/** Offset of the hierarchy's group communicator in a block. */
export const LOCAL_SUBCOMM = 4;
/** Offset of the hierarchy's leaders communicator in a block. */
export const LEADERS_SUBCOMM = 8;
/** Offset of the side communicator (`Communicator.sideContext()`: adapters such as vmcomm/stream) in a block. */
export const SIDE_SUBCOMM = 12;
/** Offset of the point-to-point context in a communicator's block. */
export const P2P_CONTEXT = 0;
/** Offset of the collective context. */
export const COLLECTIVE_CONTEXT = 1;
/** Offset of the control context (revoke notices). */
export const CONTROL_CONTEXT = 2;

/** Low tag bits that carry the argument hash in the collective context. */
export const ARGUMENT_HASH_BITS = 12;
const HASH_MASK = (1 << ARGUMENT_HASH_BITS) - 1;
/** Collective numbers wrap at this (far more than can be in flight at once on one communicator). */
export const COLLECTIVE_SEQ_MODULUS = 1 << 16;

/** Whether `context` is a communicator's collective context. */
export function isCollectiveContext(context: number): boolean {
  return context % CONTEXTS_PER_COMM === COLLECTIVE_CONTEXT;
}

/** The tag of every message of collective number `seq` whose arguments hash to `hash`. */
export function collectiveTag(seq: number, hash: number): number {
  return ((seq % COLLECTIVE_SEQ_MODULUS) << ARGUMENT_HASH_BITS) | (hash & HASH_MASK);
}

/** The collective number in a collective tag. */
export function collectiveSeqOf(tag: number): number {
  return tag >>> ARGUMENT_HASH_BITS;
}

/** The argument hash in a collective tag. */
export function argumentHashOf(tag: number): number {
  return tag & HASH_MASK;
}

/**
 * The key of a communicator's shared-memory collective cells (`Transport.collectiveCells`), from its
 * first context id: two per context block — the communicator's own and its locality-aware
 * collectives' group communicator (`LOCAL_SUBCOMM`) — so keys are never reused (context ids are not)
 * and every member derives the same one. The other internal communicators get none.
 */
export function sharedCellKey(context: number): number | undefined {
  const offset = context % CONTEXT_BLOCK;
  const block = (context - offset) / CONTEXT_BLOCK;
  if (offset === P2P_CONTEXT) return 2 * block;
  if (offset === LOCAL_SUBCOMM) return 2 * block + 1;
  return undefined;
}
