export * from "./app";
export * from "./billing";
export * from "./cli";
export * from "./config";
export * from "./registry";
