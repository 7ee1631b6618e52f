import { appendFile, mkdtemp, readdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { DiskSpool } from "./disk-spool";

const messages = (n: number, from = 0) =>
  Array.from({ length: n }, (_, i) => ({ key: `key_${i % 3}`, value: `{"n":${from + i}}` }));

describe("DiskSpool", () => {
  it("replays segments oldest first and forgets them once removed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "spool-"));
    const spool = await DiskSpool.open({ dir, maxBytes: 1_000_000, segmentBytes: 200 });
    await spool.append(messages(5, 0));
    await spool.append(messages(5, 5));
    const seen: string[] = [];
    for (let segment = await spool.oldest(); segment; segment = await spool.oldest()) {
      seen.push(...segment.messages.map((m) => m.value));
      await spool.remove(segment.seq);
    }
    expect(seen).toEqual(messages(10).map((m) => m.value));
    expect(spool.isEmpty).toBe(true);
    expect(spool.bytes).toBe(0);
    expect(await readdir(dir)).toEqual(["LOCK"]);
    await spool.close();
    expect(await readdir(dir)).toEqual([]);
  });

  it("finds what a crashed process left, skipping a torn last line", async () => {
    const dir = await mkdtemp(join(tmpdir(), "spool-"));
    const first = await DiskSpool.open({ dir, maxBytes: 1_000_000 });
    await first.append(messages(3));
    const [file] = await readdir(dir);
    await appendFile(join(dir, file ?? ""), '["key_x","{\\"n\\":');
    const second = await DiskSpool.open({ dir, maxBytes: 1_000_000 });
    expect(second.isEmpty).toBe(false);
    expect((await second.oldest())?.messages).toEqual(messages(3));
  });

  it("refuses what does not fit and says how many", async () => {
    const dir = await mkdtemp(join(tmpdir(), "spool-"));
    const spool = await DiskSpool.open({ dir, maxBytes: 100 });
    const dropped = await spool.append(messages(10));
    expect(dropped).toBeGreaterThan(0);
    expect(dropped).toBeLessThan(10);
    expect(spool.bytes).toBeLessThanOrEqual(100);
    expect((await spool.oldest())?.messages).toHaveLength(10 - dropped);
  });
});

describe("DiskSpool lock", () => {
  it("refuses a second spool on the same directory while the first is open", async () => {
    const dir = await mkdtemp(join(tmpdir(), "spool-"));
    const first = await DiskSpool.open({ dir, maxBytes: 1_000 });
    // Same process id counts as ours (a restart inside one process); simulate another live owner.
    await writeFile(join(dir, "LOCK"), String(process.ppid));
    await expect(DiskSpool.open({ dir, maxBytes: 1_000 })).rejects.toThrow(`is in use by process ${process.ppid}`);
    // A lock left by a process that no longer exists is taken over.
    await writeFile(join(dir, "LOCK"), "2147483646");
    const second = await DiskSpool.open({ dir, maxBytes: 1_000 });
    await second.close();
    await first.close();
  });
});
