import { z } from "zod";
import { AppError } from "./errors";

/**
 * Parses `env` with `schema` once, at start-up. A bad or missing variable becomes one
 * AppError("config_invalid") whose message names every offending variable.
 */
export function parseConfig<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined> = process.env,
): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    // The variable is the first path element; deeper elements point inside a parsed list.
    const variable = issue.path.length > 0 ? String(issue.path[0]) : "(environment)";
    const given = env[variable];
    const reason = given === undefined ? "is required" : `is invalid (${issue.message})`;
    return `${variable} ${reason}`;
  });
  return invalidConfig(problems);
}

function invalidConfig(problems: string[]): never {
  throw new AppError("config_invalid", `invalid configuration: ${problems.join("; ")}`);
}

/** Building blocks for per-service config schemas. */
export const env = {
  /** Comma-separated host:port list. */
  brokers: () =>
    z
      .string()
      .min(1)
      .transform((value) => value.split(",").map((broker) => broker.trim()))
      .pipe(z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, "expected host:port[,host:port...]")).min(1)),
  url: (protocols: readonly string[]) =>
    z
      .string()
      .url()
      // canParse first: zod still runs refinements after .url() fails, and new URL() would throw.
      .refine((value) => URL.canParse(value) && protocols.includes(new URL(value).protocol.replace(/:$/, "")), {
        message: `expected a ${protocols.join(" or ")} URL`,
      }),
  port: () => z.coerce.number().int().min(0).max(65535),
  positiveInt: () => z.coerce.number().int().positive(),
  logLevel: () => z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  identifier: () => z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "expected letters, digits and _"),
  /** `true`/`false` (or `1`/`0`). */
  flag: () =>
    z
      .enum(["true", "false", "1", "0"], { message: "expected true or false" })
      .transform((value) => value === "true" || value === "1"),
  /** Comma-separated items, blanks dropped. */
  list: () =>
    z.string().transform((value) =>
      value
        .split(",")
        .map((item) => item.trim())
        .filter((item) => item !== ""),
    ),
};

/** What every service that talks to the pipeline's stores needs. */
export const storesConfigSchema = z.object({
  KAFKA_BROKERS: env.brokers().default(["127.0.0.1:9092"]),
  CLICKHOUSE_URL: env.url(["http", "https"]).default("http://127.0.0.1:8123"),
  CLICKHOUSE_USER: z.string().default("default"),
  CLICKHOUSE_PASSWORD: z.string().default(""),
  CLICKHOUSE_DATABASE: env.identifier().default("keymeter"),
  REDIS_URL: env.url(["redis", "rediss"]).default("redis://127.0.0.1:6379"),
  LOG_LEVEL: env.logLevel(),
});
export type StoresConfig = z.infer<typeof storesConfigSchema>;

/** The stores of services that read Redis and ClickHouse but not Kafka: the admin API and the workers. */
export const redisClickHouseConfigSchema = storesConfigSchema.pick({
  REDIS_URL: true,
  CLICKHOUSE_URL: true,
  CLICKHOUSE_USER: true,
  CLICKHOUSE_PASSWORD: true,
  CLICKHOUSE_DATABASE: true,
  LOG_LEVEL: true,
});
