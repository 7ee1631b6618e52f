import { z } from "zod";

const formatters = new Map<string, Intl.DateTimeFormat>();
let knownSpellings: Map<string, string> | undefined;

/**
 * `timeZone` as it will be stored, or undefined when Intl does not know the zone. The
 * caller's name is kept (ICU would turn Asia/Kolkata into its legacy Asia/Calcutta); only
 * its case is fixed when ICU lists the zone ("europe/paris" -> "Europe/Paris", "utc" -> "UTC").
 */
export function canonicalTimeZone(timeZone: string): string | undefined {
  if (timeZone.length === 0 || timeZone.length > 64) return undefined;
  try {
    new Intl.DateTimeFormat("en-US", { timeZone });
  } catch {
    // RangeError: not a zone this runtime knows.
    return undefined;
  }
  knownSpellings ??= new Map([...Intl.supportedValuesOf("timeZone"), "UTC"].map((zone) => [zone.toLowerCase(), zone]));
  return knownSpellings.get(timeZone.toLowerCase()) ?? timeZone;
}

/** An IANA time zone, validated with Intl and stored in its canonical spelling. */
export const timeZoneSchema = z
  .string()
  .refine((value) => canonicalTimeZone(value) !== undefined, "expected an IANA time zone such as Europe/Paris or UTC")
  .transform((value) => canonicalTimeZone(value) ?? value);

function formatter(timeZone: string): Intl.DateTimeFormat {
  let format = formatters.get(timeZone);
  if (!format) {
    format = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    formatters.set(timeZone, format);
  }
  return format;
}

/** The wall-clock fields at `instantMs` in `timeZone`. */
export function wallClock(
  instantMs: number,
  timeZone: string,
): { year: number; month: number; day: number; hour: number; minute: number; second: number } {
  const fields = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
  for (const part of formatter(timeZone).formatToParts(instantMs)) {
    if (part.type in fields) fields[part.type as keyof typeof fields] = Number(part.value);
  }
  return fields;
}

/** The zone's offset from UTC at `instantMs`, in ms (Asia/Kolkata: +19,800,000). */
export function offsetAt(instantMs: number, timeZone: string): number {
  const wall = wallClock(instantMs, timeZone);
  const asUtc = Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute, wall.second);
  // Intl gives whole seconds: compare with the instant truncated to its second.
  return asUtc - (instantMs - (((instantMs % 1000) + 1000) % 1000));
}

const DAY_MS = 86_400_000;

/**
 * The first instant whose wall clock in `timeZone` reads `wallMs` (a wall time written as if
 * it were UTC) or later. An ambiguous wall time (clocks set back) gives the earlier instant;
 * a wall time skipped by a transition (clocks set forward) gives the transition itself.
 */
export function instantOfWallTime(wallMs: number, timeZone: string): number {
  const before = offsetAt(wallMs - DAY_MS, timeZone);
  const after = offsetAt(wallMs + DAY_MS, timeZone);
  const valid = [wallMs - before, wallMs - after].filter((t) => offsetAt(t, timeZone) === wallMs - t);
  if (valid.length > 0) return Math.min(...valid);
  // In a gap: the old offset lands exactly on the transition instant.
  return wallMs - before;
}
