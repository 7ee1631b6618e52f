import { Partitioners } from "kafkajs";
import { describe, expect, it } from "vitest";
import { EVENT_COUNT_HEADER, inRequests, packEvents, partitionFor, unpackEvents } from "./wire-format";

describe("partitionFor", () => {
  it("agrees with kafkajs's Java-compatible default partitioner on many keys", () => {
    const kafkajs = Partitioners.DefaultPartitioner();
    for (const partitions of [1, 3, 6, 12, 64]) {
      const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({
        partitionId,
        leader: 0,
        partitionErrorCode: 0,
        replicas: [0],
        isr: [0],
        offlineReplicas: [],
      }));
      for (let i = 0; i < 2_000; i++) {
        const key = `key_${i.toString(36)}${"x".repeat(i % 7)}é${i}`;
        expect(partitionFor(key, partitions)).toBe(
          kafkajs({ topic: "t", partitionMetadata, message: { key, value: "" } }),
        );
      }
    }
  });
});

describe("packEvents / unpackEvents", () => {
  it("keeps each event on its key's partition, in order, and round-trips the lines", () => {
    const events = Array.from({ length: 100 }, (_, i) => ({ key: `key_${i % 9}`, value: `{"n":${i}}` }));
    const messages = packEvents(events, 4);
    expect(new Set(messages.map((m) => m.partition)).size).toBe(messages.length);
    const seen: string[] = [];
    for (const message of messages) {
      const lines = unpackEvents(Buffer.from(String(message.value))).map(String);
      expect(message.headers?.[EVENT_COUNT_HEADER]).toBe(String(lines.length));
      for (const line of lines) {
        const n = Number(JSON.parse(line).n);
        expect(partitionFor(`key_${n % 9}`, 4)).toBe(message.partition);
        seen.push(line);
      }
    }
    // Per key, the original order is kept.
    for (let k = 0; k < 9; k++) {
      const ofKey = seen.map((l) => Number(JSON.parse(l).n)).filter((n) => n % 9 === k);
      expect(ofKey).toEqual([...ofKey].sort((a, b) => a - b));
    }
    expect(seen.length).toBe(100);
  });

  it("splits a partition's events across messages at the size bound", () => {
    const events = Array.from({ length: 50 }, () => ({ key: "key_same", value: "x".repeat(100) }));
    const messages = packEvents(events, 1, 1_000);
    expect(messages.length).toBeGreaterThan(5);
    for (const m of messages) expect(String(m.value).length).toBeLessThanOrEqual(1_000);
    expect(messages.flatMap((m) => unpackEvents(Buffer.from(String(m.value)))).length).toBe(50);
  });

  it("treats a value without newlines as one event", () => {
    expect(unpackEvents(Buffer.from('{"a":1}')).map(String)).toEqual(['{"a":1}']);
    expect(unpackEvents(null)).toEqual([null]);
  });
});

describe("inRequests", () => {
  it("puts at most one message per partition in a request, keeping each partition's order", () => {
    const events = Array.from({ length: 40 }, (_, i) => ({
      key: i % 2 === 0 ? "key_a" : "key_b",
      value: `{"n":${i}}`,
    }));
    const packed = packEvents(events, 3, 64);
    const requests = inRequests(packed);
    expect(requests.flat()).toHaveLength(packed.length);
    for (const request of requests) {
      const partitions = request.map((m) => m.partition);
      expect(new Set(partitions).size).toBe(partitions.length);
    }
    // Concatenating the requests in order gives each partition's messages in their packed order.
    const byPartition = (ms: typeof packed) =>
      ms.reduce<Record<number, string[]>>((acc, m) => {
        const list = acc[m.partition ?? 0] ?? [];
        list.push(String(m.value));
        acc[m.partition ?? 0] = list;
        return acc;
      }, {});
    expect(byPartition(requests.flat())).toEqual(byPartition(packed));
  });
});
