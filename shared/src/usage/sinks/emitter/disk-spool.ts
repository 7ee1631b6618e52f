import { type FileHandle, mkdir, open, readdir, readFile, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import { AppError } from "../../../runtime/errors";
import type { EncodedEvent } from "../../wire-format";

export interface DiskSpoolOptions {
  dir: string;
  /** Total bytes on disk before new messages are refused (counted as drops). */
  maxBytes: number;
  /** A segment is sealed at this size and a new one started. */
  segmentBytes?: number;
}

const SEGMENT = /^segment-(\d{16})\.ndjson$/;
const LOCK = "LOCK";

/**
 * One process per spool directory: two would number segments alike, replay each other's
 * events twice and delete files the other is writing. A lock left by a dead process is taken over.
 */
async function takeLock(dir: string): Promise<void> {
  const path = join(dir, LOCK);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, "wx");
      await handle.write(String(process.pid));
      await handle.close();
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = Number(await readFile(path, "utf8").catch(() => "0"));
      if (owner > 0 && owner !== process.pid && isAlive(owner)) {
        throw new AppError(
          "conflict",
          `spool directory ${dir} is in use by process ${owner}; give each instance its own`,
        );
      }
      await unlink(path).catch(() => undefined);
    }
  }
  throw new AppError("conflict", `could not lock spool directory ${dir}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * An append-only, ordered spool of messages on disk, in numbered segment files. The
 * emitter writes here while Kafka is unreachable and replays oldest-first when it returns.
 * Segments left by a crashed process are found and replayed on the next start.
 */
export class DiskSpool {
  private segments: number[] = [];
  private writing: { seq: number; handle: FileHandle; bytes: number } | undefined;
  private totalBytes = 0;

  private constructor(private readonly options: DiskSpoolOptions) {}

  static async open(options: DiskSpoolOptions): Promise<DiskSpool> {
    const spool = new DiskSpool(options);
    await mkdir(options.dir, { recursive: true });
    await takeLock(options.dir);
    for (const name of (await readdir(options.dir)).sort()) {
      const match = SEGMENT.exec(name);
      if (!match?.[1]) continue;
      spool.segments.push(Number(match[1]));
      spool.totalBytes += (await stat(join(options.dir, name))).size;
    }
    return spool;
  }

  get isEmpty(): boolean {
    return this.segments.length === 0;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  /** Appends in order and syncs to disk; returns how many messages did not fit (dropped). */
  async append(messages: EncodedEvent[]): Promise<number> {
    let text = "";
    let accepted = 0;
    for (const message of messages) {
      const line = `${JSON.stringify([message.key, message.value])}\n`;
      if (this.totalBytes + text.length + line.length > this.options.maxBytes) break;
      text += line;
      accepted++;
    }
    if (text.length > 0) {
      const segment = await this.writableSegment();
      await segment.handle.write(text);
      await segment.handle.datasync();
      segment.bytes += text.length;
      this.totalBytes += text.length;
    }
    return messages.length - accepted;
  }

  /** The oldest segment's messages; the segment being written is sealed first. */
  async oldest(): Promise<{ seq: number; messages: EncodedEvent[] } | undefined> {
    const seq = this.segments[0];
    if (seq === undefined) return undefined;
    if (this.writing?.seq === seq) await this.seal();
    const text = await readFile(this.path(seq), "utf8");
    const messages: EncodedEvent[] = [];
    for (const line of text.split("\n")) {
      if (line === "") continue;
      try {
        const [key, value] = JSON.parse(line) as [string, string];
        messages.push({ key, value });
      } catch {
        // A torn last line from a crash mid-write: its event was never acknowledged to anyone.
      }
    }
    return { seq, messages };
  }

  /** Deletes a segment whose messages Kafka acknowledged. */
  async remove(seq: number): Promise<void> {
    const path = this.path(seq);
    this.totalBytes -= (await stat(path)).size;
    await unlink(path);
    this.segments = this.segments.filter((s) => s !== seq);
  }

  async close(): Promise<void> {
    await this.seal();
    await unlink(join(this.options.dir, LOCK)).catch(() => undefined);
  }

  private async writableSegment(): Promise<{ seq: number; handle: FileHandle; bytes: number }> {
    if (this.writing && this.writing.bytes < (this.options.segmentBytes ?? 16 * 1024 * 1024)) return this.writing;
    await this.seal();
    const seq = (this.segments.at(-1) ?? 0) + 1;
    const handle = await open(this.path(seq), "a");
    this.segments.push(seq);
    this.writing = { seq, handle, bytes: 0 };
    return this.writing;
  }

  private async seal(): Promise<void> {
    const writing = this.writing;
    this.writing = undefined;
    await writing?.handle.close();
  }

  private path(seq: number): string {
    return join(this.options.dir, `segment-${String(seq).padStart(16, "0")}.ndjson`);
  }
}
