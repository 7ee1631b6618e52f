import { Counter, Histogram, Registry } from "prom-client";
import type { Decision } from "./decision";

interface DecisionTally {
  labels: { outcome: string; tier: string };
  pending: number;
}

/**
 * Prometheus metrics of the gateway's decisions. Labels are the outcome (an AppError code
 * or `admitted`) and the tier: never a key id (unbounded cardinality) and never a secret.
 */
export class GatewayMetrics {
  readonly registry: Registry;
  private readonly checkSeconds: Histogram<"outcome">;
  /**
   * Decisions counted here per request and handed to the counter when it is collected: the
   * counter's own `inc` builds and hashes its labels on every call.
   */
  private readonly tallies = new Map<string, Map<string, DecisionTally>>();
  /** The histogram's child per outcome, so an observation allocates no labels or closure. */
  private readonly timers = new Map<string, { observe(seconds: number): void }>();

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    const tallies = this.tallies;
    // Registered, and fed from the tallies when collected: nothing calls it per request.
    new Counter({
      name: "keymeter_gateway_requests_total",
      help: "Requests checked by the gateway, by outcome and tier",
      labelNames: ["outcome", "tier"],
      registers: [registry],
      collect() {
        for (const byTier of tallies.values()) {
          for (const tally of byTier.values()) {
            if (tally.pending === 0) continue;
            this.inc(tally.labels, tally.pending);
            tally.pending = 0;
          }
        }
      },
    });
    this.checkSeconds = new Histogram({
      name: "keymeter_gateway_check_seconds",
      help: "Time to authenticate, authorize and rate-limit one request",
      labelNames: ["outcome"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
      registers: [registry],
    });
  }

  observe(decision: Decision, seconds: number): void {
    const outcome = decision.error?.code ?? "admitted";
    const tier = decision.key?.tier ?? "";
    let byTier = this.tallies.get(outcome);
    if (!byTier) {
      byTier = new Map();
      this.tallies.set(outcome, byTier);
    }
    let tally = byTier.get(tier);
    if (!tally) {
      tally = { labels: { outcome, tier }, pending: 0 };
      byTier.set(tier, tally);
    }
    tally.pending++;
    let timer = this.timers.get(outcome);
    if (!timer) {
      timer = this.checkSeconds.labels({ outcome });
      this.timers.set(outcome, timer);
    }
    timer.observe(seconds);
  }
}
