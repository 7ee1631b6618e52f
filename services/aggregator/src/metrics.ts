import { Counter, Gauge, Histogram, Registry } from "prom-client";

/** The aggregator's Prometheus metrics, on a registry of its own (several instances per process in tests). */
export class AggregatorMetrics {
  readonly registry = new Registry();
  readonly consumed = new Counter({
    name: "aggregator_events_consumed_total",
    help: "Kafka messages read (rate() of this is events/s)",
    registers: [this.registry],
  });
  readonly inserted = new Counter({
    name: "aggregator_rows_inserted_total",
    help: "Usage rows inserted into ClickHouse",
    registers: [this.registry],
  });
  readonly deadLettered = new Counter({
    name: "aggregator_dlq_total",
    help: "Invalid events sent to the dead-letter topic",
    registers: [this.registry],
  });
  readonly duplicates = new Counter({
    name: "aggregator_duplicates_dropped_total",
    help: "Events dropped as producer retries of an event already stored",
    registers: [this.registry],
  });
  readonly skipped = new Counter({
    name: "aggregator_already_stored_total",
    help: "Messages skipped because ClickHouse already holds their offset (after a crash or rebalance)",
    registers: [this.registry],
  });
  readonly unknownKeyEvents = new Counter({
    name: "aggregator_unknown_key_events_total",
    help: "Events stored whose subject the key registry does not know (no customer or tier; see v_unknown_keys)",
    registers: [this.registry],
  });
  readonly insertFailures = new Counter({
    name: "aggregator_insert_failures_total",
    help: "Failed ClickHouse inserts (each is retried)",
    registers: [this.registry],
  });
  readonly hookFailures = new Counter({
    name: "aggregator_after_insert_failures_total",
    help: "After-insert hook calls that failed (the batch stays stored; the quota sweep repairs counters)",
    registers: [this.registry],
  });
  readonly insertSeconds = new Histogram({
    name: "aggregator_insert_duration_seconds",
    help: "ClickHouse insert latency per batch",
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly lag = new Gauge({
    name: "aggregator_consumer_lag",
    help: "Messages behind the partition's high watermark",
    labelNames: ["partition"],
    registers: [this.registry],
  });
  readonly paused = new Gauge({
    name: "aggregator_paused_partitions",
    help: "Partitions paused while ClickHouse is unavailable",
    registers: [this.registry],
  });
}
