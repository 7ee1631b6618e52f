export * from "./app";
export * from "./billing";
export * from "./cli";
export * from "./config";
export * from "./quota-deps";
export * from "./quota-routes";
export * from "./registry";
