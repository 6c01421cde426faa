/**
 * Forwards a rank's stdout or stderr to the launcher's, one whole line per write, so the lines of
 * different ranks never interleave inside a line (with `--tag-output`, each line starts with `[rank] `).
 *
 * Works on bytes: a multi-byte UTF-8 character split across two chunks is reassembled untouched.
 * A line longer than {@link MAX_FORWARDED_LINE_BYTES} is passed on in pieces of that size, each ended
 * with a newline (a rank printing megabytes without a newline must not make the launcher buffer
 * without bound). A last line without a newline gets one when the stream ends.
 *
 * @module
 */

/** Where forwarded lines go; `write` receives whole lines only. */
export interface LineSink {
  write(data: Buffer): void;
}

/** Longest line passed on whole: 1 MiB. */
export const MAX_FORWARDED_LINE_BYTES = 1024 * 1024;

const NEWLINE = Buffer.from('\n');

/** One stream's forwarder. */
export class LineForwarder {
  private readonly sink: LineSink;
  private readonly prefix: Buffer;
  private readonly maxLineBytes: number;
  private parts: Buffer[] = [];
  private partBytes = 0;

  /**
   * @param prefix written before every line (`''` for none)
   */
  constructor(sink: LineSink, prefix = '', maxLineBytes = MAX_FORWARDED_LINE_BYTES) {
    this.sink = sink;
    this.prefix = Buffer.from(prefix, 'utf8');
    this.maxLineBytes = maxLineBytes;
  }

  /** Feeds one chunk of the rank's output. */
  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const contentEnd = newline === -1 ? chunk.length : newline;
      const room = this.maxLineBytes - this.partBytes;
      if (contentEnd - start > room) {
        // Over the limit: pass on what fits as a line of its own.
        this.parts.push(chunk.subarray(start, start + room));
        this.partBytes += room;
        start += room;
        this.emit();
        continue;
      }
      this.parts.push(chunk.subarray(start, contentEnd));
      this.partBytes += contentEnd - start;
      if (newline === -1) break;
      this.emit();
      start = newline + 1;
    }
  }

  /** The stream ended: passes on an unfinished last line, with a newline added. */
  end(): void {
    if (this.partBytes > 0) this.emit();
  }

  /** Writes the held line with its prefix and a newline, in one write. */
  private emit(): void {
    this.sink.write(Buffer.concat([this.prefix, ...this.parts, NEWLINE]));
    this.parts = [];
    this.partBytes = 0;
  }
}
