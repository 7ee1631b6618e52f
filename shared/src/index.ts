// Transitional: every group re-exported while branches still import the root. Import a group
// (`@keymeter/shared/usage`) instead.
export * from "./api-keys/index";
export * from "./billing/index";
export * from "./runtime/index";
export * from "./stores/index";
export * from "./usage/index";
