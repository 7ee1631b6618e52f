import { type ClickHouseClient, quoteString, toDateTime } from "../../stores/clickhouse";

/** One row of `billing_sync_log` (migration 0010). */
export interface BillingAuditRow {
  at: number;
  run_id: string;
  kind: "sync" | "close" | "closed";
  customer_id: string;
  tier: string;
  period_id: string;
  period_start: number;
  period_end: number;
  stripe_customer_id: string;
  meter_event_name: string;
  value: number;
  identifier: string;
  event_time: number;
  outcome: "accepted" | "duplicate" | "rejected" | "failed" | "dry_run" | "closed";
  error: string;
}

/**
 * The audit of every meter event the billing worker sent and every period it closed, in
 * ClickHouse for SQL. Written after Stripe answered; a failed audit write fails the run (the
 * next run re-sends nothing Stripe accepted, but the audit must not have holes).
 */
export class BillingAuditLog {
  constructor(private readonly clickhouse: ClickHouseClient) {}

  async write(rows: readonly BillingAuditRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.clickhouse.insert({
      table: "billing_sync_log",
      format: "JSONEachRow",
      values: rows.map((row) => ({
        ...row,
        at: toDateTime(row.at),
        period_start: toDateTime(row.period_start),
        period_end: toDateTime(row.period_end),
        event_time: toDateTime(row.event_time),
      })),
    });
  }

  /** The last value Stripe accepted per tier for one customer and period (what the close or a sync left there). */
  async lastAccepted(customerId: string, periodId: string): Promise<Map<string, { value: number; kind: string }>> {
    const result = await this.clickhouse.query({
      query: `SELECT tier, argMax(value, event_time) AS value, argMax(kind, event_time) AS kind FROM billing_sync_log WHERE customer_id = ${quoteString(customerId)} AND period_id = ${quoteString(periodId)} AND kind IN ('sync', 'close') AND outcome IN ('accepted', 'duplicate', 'dry_run') GROUP BY tier`,
      format: "JSONEachRow",
    });
    const rows = await result.json<{ tier: string; value: string | number; kind: string }>();
    return new Map(rows.map((row) => [row.tier, { value: Number(row.value), kind: row.kind }]));
  }
}
