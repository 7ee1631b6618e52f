import { type ClickHouseClient, toDateTime } from "../../stores/clickhouse";

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
 * ClickHouse for SQL. Written after Stripe answered and before the totals are recorded as sent:
 * a failed audit write fails the run, and the next run sends (and audits) those totals again.
 */
export class BillingAuditLog {
  constructor(private readonly clickhouse: ClickHouseClient) {}

  async write(rows: readonly BillingAuditRow[]): Promise<void> {
    if (rows.length === 0) return;
    await this.clickhouse.insert({ table: BILLING_AUDIT_TABLE, format: "JSONEachRow", values: rows.map(auditRowJson) });
  }
}

export const BILLING_AUDIT_TABLE = "billing_sync_log";

/** A row as JSONEachRow takes it (DateTime columns as "YYYY-MM-DD hh:mm:ss"). */
export function auditRowJson(row: BillingAuditRow): Record<string, unknown> {
  return {
    ...row,
    at: toDateTime(row.at),
    period_start: toDateTime(row.period_start),
    period_end: toDateTime(row.period_end),
    event_time: toDateTime(row.event_time),
  };
}
