import { randomBytes } from "node:crypto";
import { inject } from "vitest";

/** Where the real services are. Filled in by global-setup (local scripts or containers). */
export interface ServiceAddresses {
  kafkaBrokers: string[];
  clickhouseUrl: string;
  redisUrl: string;
  /** Absent when stripe-mock could not be installed on this machine. */
  stripeApiBase?: string;
}

declare module "vitest" {
  export interface ProvidedContext {
    services: ServiceAddresses;
  }
}

export function services(): ServiceAddresses {
  return inject("services");
}

/** A name no other test uses: for topics, databases, queues and Redis key prefixes. */
export function uniqueName(label: string): string {
  return `t_${label}_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
}
