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

/** A name no other test uses, valid as a topic, database, queue or Redis key prefix. */
export function uniqueName(label: string): string {
  return `t_${label.replace(/[^A-Za-z0-9]/g, "_")}_${Date.now().toString(36)}_${randomBytes(3).toString("hex")}`;
}
