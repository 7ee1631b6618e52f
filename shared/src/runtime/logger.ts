import { type Logger, type LoggerOptions, pino } from "pino";

export type { Logger };

/**
 * Paths pino replaces with "[redacted]": API key secrets may arrive in any of these, and
 * a secret must never reach a log line.
 */
export const REDACTED_PATHS = [
  "secret",
  "*.secret",
  "apiKey",
  "*.apiKey",
  "api_key",
  "*.api_key",
  "authorization",
  "*.authorization",
  "headers.authorization",
  'headers["x-api-key"]',
  "req.headers.authorization",
  'req.headers["x-api-key"]',
  "password",
  "*.password",
  "token",
  "*.token",
];

/** A structured JSON logger for one service; `destination` lets tests capture the output. */
export function createLogger(
  service: string,
  level: LoggerOptions["level"] = "info",
  destination?: pino.DestinationStream,
): Logger {
  const options: LoggerOptions = {
    level,
    base: { service },
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return destination ? pino(options, destination) : pino(options);
}
