import { createLogger, isAppError, parseConfig } from "@keymeter/shared/runtime";
import { runCli } from "./cli";
import { registryConfigSchema } from "./config";
import { createRegistryFromConfig } from "./registry";

// The CLI's own log lines (mirror failures, audit) go to stderr, so stdout stays JSON.
const connect = () => {
  const config = parseConfig(registryConfigSchema);
  return createRegistryFromConfig(
    config,
    createLogger("keymeter", config.LOG_LEVEL === "info" ? "warn" : config.LOG_LEVEL, process.stderr),
  );
};

runCli(process.argv, connect, { out: process.stdout, err: process.stderr }).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`keymeter: ${isAppError(error) ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
