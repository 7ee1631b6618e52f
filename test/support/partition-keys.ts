import { partitionFor } from "@keymeter/shared/usage";

/**
 * Test key ids chosen by the partitioner so that events spread over every partition. Key i
 * lands on partition i of a 12-partition topic; as (h % 12) % n = h % n for every n that
 * divides 12, the same keys cover every partition of a 1, 2, 3, 4, 6 or 12-partition topic.
 */
export const SPREAD_PARTITIONS = 12;

function keysOnEveryPartition(partitions: number): string[] {
  const keys: Array<string | undefined> = Array.from({ length: partitions });
  for (let n = 0; keys.some((key) => key === undefined); n++) {
    const candidate = `key_spread${String(n).padStart(6, "0")}`;
    const partition = partitionFor(candidate, partitions);
    if (keys[partition] === undefined) keys[partition] = candidate;
  }
  return keys.map((key) => key ?? "");
}

/** One key per partition of a 12-partition topic, in partition order. */
export const TEST_KEYS: readonly string[] = keysOnEveryPartition(SPREAD_PARTITIONS);

/** The partitions of an `n`-partition topic that `keys` reach (sorted). */
export function partitionsReached(keys: Iterable<string>, partitions: number): number[] {
  return [...new Set([...keys].map((key) => partitionFor(key, partitions)))].sort((a, b) => a - b);
}
