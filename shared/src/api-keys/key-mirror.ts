import { type ClickHouseClient, quoteString, toDateTime } from "../stores/clickhouse";
import type { KeyView } from "./key-record";

/** The table keys are mirrored to (`INSERT INTO api_keys FORMAT JSONEachRow`). */
export const KEY_MIRROR_TABLE = "api_keys";

/** The newest mirrored row of one key. */
export function mirroredKeyQuery(keyId: string): string {
  return `SELECT * FROM api_keys FINAL WHERE key_id = ${quoteString(keyId)}`;
}

/** Where key metadata is copied for SQL joins. Never receives a secret or a hash. */
export interface KeyMirror {
  upsert(keys: readonly KeyView[]): Promise<void>;
}

/** The `api_keys` ReplacingMergeTree table (migration 0003); read it with FINAL or argMax by version. */
export class ClickHouseKeyMirror implements KeyMirror {
  constructor(private readonly client: ClickHouseClient) {}

  async upsert(keys: readonly KeyView[]): Promise<void> {
    if (keys.length === 0) return;
    await this.client.insert({ table: KEY_MIRROR_TABLE, values: keys.map(keyMirrorRow), format: "JSONEachRow" });
  }

  /** The mirrored row of one key, newest version (for checks and repairs). */
  async get(keyId: string): Promise<Record<string, unknown> | undefined> {
    const result = await this.client.query({ query: mirroredKeyQuery(keyId), format: "JSONEachRow" });
    const [row] = await result.json<Record<string, unknown>>();
    return row;
  }
}

const dateTime = (value: string | null) => (value === null ? null : toDateTime(Date.parse(value)));

/** The `api_keys` row of a key: metadata only. */
export function keyMirrorRow(key: KeyView) {
  return {
    key_id: key.id,
    customer_id: key.customer_id,
    tier: key.tier,
    name: key.name,
    env: key.env,
    scope: key.scope,
    routes: key.routes,
    ip_allowlist: key.ip_allowlist,
    // Expiry is a property of time: the table stores the stored state and expires_at.
    state: key.state === "revoked" ? "revoked" : "active",
    hint: key.hint,
    created_at: dateTime(key.created_at),
    updated_at: dateTime(key.updated_at),
    rotated_at: dateTime(key.rotated_at),
    revoked_at: dateTime(key.revoked_at),
    expires_at: dateTime(key.expires_at),
    version: key.version,
    aliases: key.aliases,
  };
}
