import { Counter, Histogram, Registry } from "prom-client";
import type { Decision } from "./decision";

/**
 * Prometheus metrics of the gateway's decisions. Labels are the outcome (an AppError code
 * or `admitted`) and the tier: never a key id (unbounded cardinality) and never a secret.
 */
export class GatewayMetrics {
  readonly registry: Registry;
  private readonly decisions: Counter<"outcome" | "tier">;
  private readonly checkSeconds: Histogram<"outcome">;

  constructor(registry: Registry = new Registry()) {
    this.registry = registry;
    this.decisions = new Counter({
      name: "keymeter_gateway_requests_total",
      help: "Requests checked by the gateway, by outcome and tier",
      labelNames: ["outcome", "tier"],
      registers: [registry],
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
    this.decisions.inc({ outcome, tier: decision.key?.tier ?? "" });
    this.checkSeconds.observe({ outcome }, seconds);
  }
}
