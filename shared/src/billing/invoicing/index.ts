export * from "./billing-audit";
export * from "./billing-setup";
export * from "./billing-state";
export * from "./billing-usage";
export * from "./invoice-expectation";
export * from "./reconciliation";
export * from "./stamp-window";
