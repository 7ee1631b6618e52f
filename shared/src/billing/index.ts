export * from "./quota-flags";
export * from "./tiers";
