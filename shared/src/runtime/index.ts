export * from "./config";
export * from "./describe-issues";
export * from "./errors";
export * from "./http-error";
export * from "./listen";
export * from "./logger";
export * from "./metrics-server";
export * from "./service";
