export * from "./app";
export * from "./cli";
export * from "./config";
export * from "./registry";
