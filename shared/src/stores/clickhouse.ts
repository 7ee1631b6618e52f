import { type ClickHouseClient, ClickHouseLogLevel, createClient } from "@clickhouse/client";

export type { ClickHouseClient };

export interface ClickHouseConnection {
  url: string;
  username: string;
  password: string;
  database: string;
}

/** The connection settings in a service's parsed config. */
export function clickHouseConnection(config: {
  CLICKHOUSE_URL: string;
  CLICKHOUSE_USER: string;
  CLICKHOUSE_PASSWORD: string;
  CLICKHOUSE_DATABASE: string;
}): ClickHouseConnection {
  return {
    url: config.CLICKHOUSE_URL,
    username: config.CLICKHOUSE_USER,
    password: config.CLICKHOUSE_PASSWORD,
    database: config.CLICKHOUSE_DATABASE,
  };
}

/**
 * A client for one database. Only settings that ClickHouse 18.16 knows are sent: no query
 * parameters (callers validate and quote values), no async inserts.
 */
export function createClickHouse(
  connection: ClickHouseConnection,
  options: { requestTimeoutMs?: number } = {},
): ClickHouseClient {
  return createClient({
    url: connection.url,
    username: connection.username,
    password: connection.password,
    database: connection.database,
    request_timeout: options.requestTimeoutMs ?? 30_000,
    compression: { request: false, response: false },
    // Failures reach the caller as errors with context; the client's own error log would repeat them.
    log: { level: ClickHouseLogLevel.OFF },
  });
}

/** Quotes a string as a ClickHouse literal: the replacement for query parameters on 18.16. */
export function quoteString(value: string): string {
  return `'${value.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

/** Parses `SELECT version()` output ("18.16.1", "24.8.4.13") into numbers. */
export function parseVersion(version: string): number[] {
  return version
    .trim()
    .split(".")
    .map((part) => Number.parseInt(part, 10))
    .filter((n) => Number.isFinite(n));
}

/** Compares two dotted versions: negative, zero or positive like a sort comparator. */
export function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const diff = (a[i] ?? 0) - (b[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}

/** The query behind {@link serverVersion}: one row, `version` as text. */
export const SERVER_VERSION_QUERY = "SELECT version() AS version";

/** The server's version, e.g. [18, 16, 1]. */
export async function serverVersion(client: ClickHouseClient): Promise<number[]> {
  const result = await client.query({ query: SERVER_VERSION_QUERY, format: "JSONEachRow" });
  const [row] = await result.json<{ version: string }>();
  if (!row) throw new Error("SELECT version() returned no row");
  return parseVersion(row.version);
}

/** A `DateTime('UTC')` literal for JSONEachRow inserts: "2026-11-29 00:37:45". */
export function toDateTime(date: Date | number): string {
  return new Date(date).toISOString().slice(0, 19).replace("T", " ");
}
