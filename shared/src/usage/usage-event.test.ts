import { describe, expect, it } from "vitest";
import { generateSecret } from "../api-keys/key-format";
import { eventTimeMs, parseUsageEvent, parseUsageEventBytes, usageEventSchema } from "./usage-event";

const valid = {
  specversion: "1.0",
  id: "evt-1",
  source: "gateway-eu-1",
  type: "api.request",
  subject: "key_AbCdEf123456",
  time: "2026-11-29T10:15:30.123Z",
  data: {
    method: "GET",
    route: "/v1/users/:id",
    status: 200,
    latency_ms: 12.5,
    request_bytes: 10,
    response_bytes: 200,
  },
};

describe("parseUsageEvent", () => {
  it("accepts a CloudEvents usage event and fills defaults", () => {
    const result = parseUsageEvent(valid);
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.event.data.units).toBe(1);
      expect(result.event.data.customer_id).toBe("");
    }
  });

  it.each([
    ["data.status", { ...valid, data: { ...valid.data, status: "200" } }],
    ["time", { ...valid, time: "yesterday" }],
    ["subject", { ...valid, subject: "sk_live_this_looks_like_a_secret" }],
    ["specversion", { ...valid, specversion: "0.3" }],
    ["data.route", { ...valid, data: { ...valid.data, route: "users/42" } }],
    ["data.units", { ...valid, data: { ...valid.data, units: -1 } }],
    ["id", { ...valid, id: undefined }],
  ])("names the bad field %s", (field, event) => {
    const result = parseUsageEvent(event);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error).toContain(`${field}:`);
  });

  it("refuses event times before 2000 or more than a day ahead, naming the field", () => {
    for (const time of [
      "1999-12-31T23:59:59Z",
      "0000-01-01T00:30:00+01:00",
      new Date(Date.now() + 2 * 86_400_000).toISOString(),
    ]) {
      const result = parseUsageEvent({ ...valid, time });
      expect(result).toMatchObject({ ok: false, error: expect.stringContaining("time: outside the accepted range") });
    }
    expect(parseUsageEvent({ ...valid, time: new Date(Date.now() + 3_600_000).toISOString() }).ok).toBe(true);
  });

  it("rejects an impossible date that matches the RFC 3339 shape", () => {
    const result = parseUsageEvent({ ...valid, time: "2026-13-45T10:00:00Z" });
    expect(result).toMatchObject({ ok: false });
  });
});

describe("calendar-invalid times", () => {
  it("are refused although Date.parse would shift them to a real day", () => {
    for (const time of [
      "2026-02-30T10:00:00Z", // March 2 for Date.parse
      "2025-02-29T10:00:00Z", // not a leap year
      "2026-04-31T10:00:00Z",
      "2026-03-01T24:00:00Z", // 24:00 is the next midnight for Date.parse
      "2026-03-01T10:60:00Z",
      "2026-03-01T10:00:60Z",
      "2026-03-01T10:00:00+24:00",
      "2026-03-01T10:00:00+01:60",
    ]) {
      expect(parseUsageEvent({ ...valid, time }), time).toMatchObject({
        ok: false,
        error: expect.stringContaining("time: not a real date"),
      });
    }
  });

  it("accepts real days at the edges", () => {
    for (const time of ["2024-02-29T23:59:59Z", "2025-12-31T23:59:59.999+14:00", "2026-01-31T00:00:00-12:00"]) {
      expect(parseUsageEvent({ ...valid, time }).ok, time).toBe(true);
    }
  });
});

describe("eventTimeMs", () => {
  const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
  /** The reference: RFC 3339 by regex, Date.parse, and fields that survive the round trip (no roll-over). */
  const reference = (time: string): number => {
    if (!RFC3339.test(time)) return Number.NaN;
    const ms = Date.parse(time);
    if (Number.isNaN(ms)) return Number.NaN;
    const zulu = time.endsWith("Z");
    const offsetHours = zulu ? 0 : Number(time.slice(-5, -3));
    const offsetMinutes = zulu ? 0 : Number(time.slice(-2));
    if (offsetHours > 23 || offsetMinutes > 59) return Number.NaN;
    const offset = (time.at(-6) === "-" ? -1 : 1) * (offsetHours * 60 + offsetMinutes);
    const local = new Date(ms + offset * 60_000).toISOString();
    return local.slice(0, 19) === time.slice(0, 19) ? ms : Number.NaN;
  };

  it("reads every time as Date.parse does, and refuses what is not RFC 3339 or not a real instant", () => {
    const times: string[] = [];
    const pick = <T>(items: readonly T[]) => items[Math.floor(Math.random() * items.length)] as T;
    const two = () => pick(["00", "01", "09", "12", "23", "24", "28", "29", "30", "31", "59", "60", "99", "1x"]);
    for (let i = 0; i < 40_000; i++) {
      const fraction = pick(["", ".5", ".12", ".123", ".1234", ".123456789", ".1234567890", ".", ".x"]);
      const zone = pick(["Z", "z", "+00:00", "-00:00", "+05:30", "-12:00", "+14:00", "+24:00", "+01:60", "+0100", ""]);
      const year = pick(["1999", "2000", "2024", "2025", "2026", "2100", "0050", "20a6"]);
      const sep = pick(["T", "T", "T", " ", "t"]);
      times.push(`${year}-${two()}-${two()}${sep}${two()}:${two()}:${two()}${fraction}${zone}`);
    }
    for (const time of times) {
      const expected = reference(time);
      if (Number.isNaN(expected)) expect(eventTimeMs(time), time).toBeNaN();
      else expect(eventTimeMs(time), time).toBe(expected);
    }
    expect(times.filter((time) => !Number.isNaN(reference(time))).length).toBeGreaterThan(100);
  });
});

describe("secrets in events", () => {
  const secret = generateSecret("km", "live");
  it.each([
    ["id", { ...valid, id: `evt-${secret}` }],
    ["source", { ...valid, source: `gw ${secret}` }],
    ["data.route", { ...valid, data: { ...valid.data, route: `/v1/files/${secret}` } }],
    ["data.customer_id", { ...valid, data: { ...valid.data, customer_id: secret } }],
    ["data.tier", { ...valid, data: { ...valid.data, tier: `x${generateSecret("acme", "test")}` } }],
    ["subject", { ...valid, subject: secret }],
    ["subject", { ...valid, subject: "km_live_cut_short" }],
  ])("are refused in %s, without echoing the secret", (field, event) => {
    const result = parseUsageEvent(event);
    expect(result).toMatchObject({ ok: false, error: expect.stringContaining(`${field}:`) });
    if (!result.ok) expect(result.error).not.toContain(secret.slice(8));
  });

  it("do not catch look-alikes without a valid checksum", () => {
    const forged = `${secret.slice(0, -1)}${secret.endsWith("a") ? "b" : "a"}`;
    expect(parseUsageEvent({ ...valid, data: { ...valid.data, route: `/v1/files/${forged}` } }).ok).toBe(true);
  });
});

describe("subjects", () => {
  it("are key ids or key aliases (a Kong consumer id or custom_id)", () => {
    for (const subject of ["key_AbCdEf123456", "3f0c9a2e-1b2c-4d5e-8f90-123456789abc", "acme-prod", "gw2:key/42"]) {
      expect(parseUsageEvent({ ...valid, subject }).ok, subject).toBe(true);
    }
    for (const subject of ["", "key_ab", "two words", "-lead", "a".repeat(129)]) {
      expect(parseUsageEvent({ ...valid, subject }).ok, subject).toBe(false);
    }
  });
});

describe("parseUsageEventBytes", () => {
  it("explains invalid JSON, a missing value and an oversized event", () => {
    expect(parseUsageEventBytes("{not json")).toMatchObject({
      ok: false,
      error: expect.stringContaining("not valid JSON"),
    });
    expect(parseUsageEventBytes(null)).toEqual({ ok: false, error: "message has no value" });
    const huge = JSON.stringify({ ...valid, id: "x".repeat(20_000) });
    expect(parseUsageEventBytes(huge)).toMatchObject({ ok: false, error: expect.stringContaining("byte limit") });
  });

  it("parses a valid event from bytes", () => {
    expect(parseUsageEventBytes(Buffer.from(JSON.stringify(valid)))).toMatchObject({ ok: true });
  });
});

describe("the fast path agrees with the schema", () => {
  // Mutations of a valid event, field by field: whatever parseUsageEvent accepts, zod must
  // accept with the same result, and whatever zod rejects must be rejected.
  const odd: unknown[] = [
    undefined,
    null,
    "",
    "x",
    " ",
    0,
    -1,
    1.5,
    99,
    100,
    599,
    600,
    1e9,
    1e9 + 1,
    2 ** 53,
    true,
    [],
    {},
    "/",
    "/a",
    "GET",
    "get",
    "1.0",
    "api.request",
    "key_abcdefgh",
    "key_ab",
    "2026-11-29T10:00:00Z",
    "2026-11-29T10:00:00+02:00",
    "2026-02-30T10:00:00Z",
    "2025-02-29T10:00:00Z",
    "2026-03-01T24:00:00Z",
    "2024-02-29T10:00:00+01:00",
    "acme-consumer",
    "km_live_x",
    `/v1/${generateSecret("km", "live")}`,
    generateSecret("km", "test"),
    "a".repeat(129),
    "a".repeat(257),
    "application/json",
    "text/plain",
  ];
  const paths = [
    ["specversion"],
    ["id"],
    ["source"],
    ["type"],
    ["subject"],
    ["time"],
    ["datacontenttype"],
    ["data"],
    ...[
      "method",
      "route",
      "status",
      "latency_ms",
      "request_bytes",
      "response_bytes",
      "units",
      "customer_id",
      "tier",
      "extra",
    ].map((f) => ["data", f]),
  ];

  it.each(paths.map((p) => [p.join(".")] as const))("for every odd value of %s", (path) => {
    const keys = path.split(".");
    for (const value of odd) {
      const event = structuredClone(valid) as Record<string, unknown>;
      const target = (keys.length === 2 ? event.data : event) as Record<string, unknown>;
      const field = keys.at(-1) ?? "";
      if (value === undefined) delete target[field];
      else target[field] = value;
      const schema = usageEventSchema.safeParse(event);
      const ours = parseUsageEvent(event);
      expect(ours.ok, `${path} = ${JSON.stringify(value)}`).toBe(schema.success);
      if (ours.ok && schema.success) expect(ours.event).toEqual(schema.data);
    }
  });
});
