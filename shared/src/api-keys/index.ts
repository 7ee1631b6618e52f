export * from "./ip-allowlist";
export * from "./key-attribution";
export * from "./key-authentication";
export * from "./key-format";
export * from "./key-mirror";
export * from "./key-record";
export * from "./key-registry";
export * from "./scopes";
