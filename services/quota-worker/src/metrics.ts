import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** The quota worker's Prometheus metrics, on a registry of its own (several instances per process in tests). */
export class QuotaWorkerMetrics {
  readonly registry = new Registry();
  readonly checks = new Counter({
    name: "quota_checks_total",
    help: "Quota checks of one key, by why they ran",
    labelNames: ["reason"],
    registers: [this.registry],
  });
  readonly flagsSet = new Counter({
    name: "quota_flags_set_total",
    help: "Keys flagged over quota (gateways answer 429)",
    registers: [this.registry],
  });
  readonly flagsCleared = new Counter({
    name: "quota_flags_cleared_total",
    help: "Quota flags removed (new period, tier upgrade, raised quota, override)",
    registers: [this.registry],
  });
  readonly countersRepaired = new Counter({
    name: "quota_counters_repaired_total",
    help: "Month-to-date counters the sweep raised to ClickHouse's figure (missed aggregator hooks)",
    registers: [this.registry],
  });
  readonly webhooksEnqueued = new Counter({
    name: "quota_webhooks_enqueued_total",
    help: "Threshold webhook deliveries enqueued (one per key, threshold, period and endpoint)",
    registers: [this.registry],
  });
  readonly webhookDeliveries = new Counter({
    name: "quota_webhook_deliveries_total",
    help: "Threshold webhooks an endpoint accepted (2xx)",
    registers: [this.registry],
  });
  readonly webhookFailures = new Counter({
    name: "quota_webhook_failures_total",
    help: "Failed webhook delivery attempts (retried with back-off)",
    registers: [this.registry],
  });
  readonly webhookInDoubt = new Counter({
    name: "quota_webhook_in_doubt_total",
    help: "Deliveries whose earlier attempt died mid-send (worker killed); not resent, see the log",
    registers: [this.registry],
  });
  readonly sweepSeconds = new Histogram({
    name: "quota_sweep_duration_seconds",
    help: "Duration of a full sweep",
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });
  readonly sweepKeys = new Gauge({
    name: "quota_sweep_keys",
    help: "Keys examined by the last sweep",
    registers: [this.registry],
  });
  readonly flaggedKeys = new Gauge({
    name: "quota_flagged_keys",
    help: "Keys flagged after the last sweep",
    registers: [this.registry],
  });
}
