import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** The billing worker's Prometheus metrics (no customer id is ever a label). */
export class BillingWorkerMetrics {
  readonly registry = new Registry();
  readonly syncRuns = new Counter({
    name: "billing_sync_runs_total",
    help: "Tier sync runs by outcome (ok, failed: some events will be resent, skipped: a run of the tier was in progress)",
    labelNames: ["tier", "outcome"],
    registers: [this.registry],
  });
  readonly meterEvents = new Counter({
    name: "billing_meter_events_total",
    help: "Meter events sent by kind (sync, close) and Stripe's outcome",
    labelNames: ["tier", "kind", "outcome"],
    registers: [this.registry],
  });
  readonly unchanged = new Counter({
    name: "billing_sync_unchanged_total",
    help: "Customers skipped by a sync because Stripe already holds their month-to-date total",
    labelNames: ["tier"],
    registers: [this.registry],
  });
  readonly unlinked = new Gauge({
    name: "billing_unlinked_customers",
    help: "Customers with usage in the tier and no Stripe customer (not billed) at the last sync",
    labelNames: ["tier"],
    registers: [this.registry],
  });
  readonly syncSeconds = new Histogram({
    name: "billing_sync_duration_seconds",
    help: "Duration of a tier sync run",
    labelNames: ["tier"],
    buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [this.registry],
  });
  readonly lastSync = new Gauge({
    name: "billing_last_sync_timestamp_seconds",
    help: "When the tier's last successful sync finished",
    labelNames: ["tier"],
    registers: [this.registry],
  });
  readonly closes = new Counter({
    name: "billing_period_closes_total",
    help: "Customer periods closed (final totals accepted by Stripe)",
    registers: [this.registry],
  });
  readonly lateCloses = new Counter({
    name: "billing_period_closes_late_total",
    help: "Closes finished after the invoice grace period (Stripe may have finalized without them): alert on any",
    registers: [this.registry],
  });
  readonly closeLag = new Gauge({
    name: "billing_close_lag_seconds",
    help: "Time from period end to the last close that finished",
    registers: [this.registry],
  });
  readonly differences = new Gauge({
    name: "billing_reconciliation_differences",
    help: "Differences found by the last reconciliation of the previous period, by kind",
    labelNames: ["kind"],
    registers: [this.registry],
  });
}
