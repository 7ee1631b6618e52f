import type { Writable } from "node:stream";
import { AppError, describeIssues, isAppError } from "@keymeter/shared/runtime";
import { Command, CommanderError, Option } from "commander";
import type { z } from "zod";
import { type AdminBilling, linkInputSchema, reconcileQuerySchema, reconcileRequest } from "./billing";
import { addQuotaCommands } from "./cli-quota";
import type { RegistryDeps } from "./registry";

export interface CliIo {
  out: Writable;
  err: Writable;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

/**
 * `keymeter`: keys and tiers from a terminal, straight against the registry (Redis and the
 * ClickHouse mirror), so it also creates the first admin key. Output is JSON on stdout; a
 * failure is one line on stderr and a non-zero exit code. `connect` runs only for commands
 * that need the registry, so `--help` needs no Redis.
 */
export function buildCli(connect: () => Promise<RegistryDeps> | RegistryDeps, io: CliIo): Command {
  const print = (value: unknown) => io.out.write(`${JSON.stringify(value, null, 2)}\n`);
  const withRegistry =
    <A extends unknown[]>(action: (deps: RegistryDeps, ...args: A) => Promise<unknown>) =>
    async (...args: A) => {
      const deps = await connect();
      try {
        print(await action(deps, ...args));
      } finally {
        await deps.close();
      }
    };

  const program = new Command("keymeter")
    .description("keymeter: API keys, tiers and usage metering")
    .configureOutput({
      writeOut: (text) => io.out.write(text),
      writeErr: (text) => io.err.write(text),
    })
    .exitOverride();

  const keys = program.command("keys").description("create, list, show, update, rotate and revoke API keys");

  keys
    .command("create")
    .description("create a key; its secret is printed once and never stored")
    .requiredOption("--customer <id>", "customer id")
    .requiredOption("--tier <name>", "tier name (see 'keymeter tiers list')")
    .addOption(new Option("--scope <scope>", "what the key may do").choices(["read-only", "read-write", "admin"]))
    .addOption(new Option("--env <env>", "live or test key").choices(["live", "test"]))
    .option("--name <name>", "a label for people")
    .option("--route <prefix>", "restrict the key to a path prefix (repeatable)", collect)
    .option("--ip <cidr>", "allow requests only from this address or CIDR block (repeatable)", collect)
    .option("--expires-at <time>", "RFC 3339 time after which the key stops working")
    .option("--alias <name>", "another system's name for the key, e.g. a Kong consumer id (repeatable)", collect)
    .action(
      withRegistry(async ({ registry }, options: Record<string, string | string[] | undefined>) => {
        const issued = await registry.create({
          customer_id: String(options.customer),
          tier: String(options.tier),
          ...defined({
            scope: options.scope,
            env: options.env,
            name: options.name,
            routes: options.route,
            ip_allowlist: options.ip,
            expires_at: options.expiresAt,
            aliases: options.alias,
          }),
        } as Parameters<typeof registry.create>[0]);
        return { ...issued, note: "store the secret now: it is shown only once" };
      }),
    );

  keys
    .command("list")
    .description("list keys, newest first")
    .option("--customer <id>", "only this customer's keys")
    .option("--limit <n>", "at most this many", "100")
    .option("--offset <n>", "skip this many", "0")
    .action(
      withRegistry(async ({ registry }, options: { customer?: string; limit: string; offset: string }) => {
        const limit = wholeNumber("--limit", options.limit, 1);
        const offset = wholeNumber("--offset", options.offset, 0);
        return registry.list({ ...(options.customer ? { customerId: options.customer } : {}), limit, offset });
      }),
    );

  keys
    .command("show <id>")
    .description("show one key (never its secret)")
    .action(withRegistry(async ({ registry }, id: string) => registry.show(id)));

  keys
    .command("update <id>")
    .description("change a key's tier, scope, routes, IP allowlist, name, expiry or aliases")
    .option("--tier <name>", "new tier")
    .addOption(new Option("--scope <scope>", "new scope").choices(["read-only", "read-write", "admin"]))
    .option("--name <name>", "new label")
    .option("--route <prefix>", "replace the route restrictions (repeatable)", collect)
    .option("--no-routes", "remove every route restriction")
    .option("--ip <cidr>", "replace the IP allowlist (repeatable)", collect)
    .option("--no-ips", "remove the IP allowlist")
    .option("--expires-at <time>", "new expiry (RFC 3339), or 'never'")
    .option("--alias <name>", "replace the key's aliases (repeatable)", collect)
    .option("--no-aliases", "remove every alias")
    .action(
      withRegistry(
        async ({ registry }, id: string, options: Record<string, string | string[] | boolean | undefined>) => {
          const patch = defined({
            tier: options.tier,
            scope: options.scope,
            name: options.name,
            routes: options.routes === false ? [] : options.route,
            ip_allowlist: options.ips === false ? [] : options.ip,
            expires_at: options.expiresAt === "never" ? null : options.expiresAt,
            aliases: options.aliases === false ? [] : options.alias,
          });
          return registry.update(id, patch as Parameters<typeof registry.update>[1]);
        },
      ),
    );

  keys
    .command("rotate <id>")
    .description("issue a new secret; the old one keeps working for the grace period")
    .option("--grace-seconds <n>", "how long the old secret keeps working (default: KEY_ROTATION_GRACE_SECONDS)")
    .action(
      withRegistry(async ({ registry }, id: string, options: { graceSeconds?: string }) => {
        const grace =
          options.graceSeconds === undefined ? undefined : wholeNumber("--grace-seconds", options.graceSeconds, 0);
        const issued = await registry.rotate(id, grace === undefined ? {} : { graceMs: grace * 1000 });
        return { ...issued, note: "store the secret now: it is shown only once" };
      }),
    );

  keys
    .command("revoke <id>")
    .description("revoke a key for good; every gateway refuses it within a second")
    .action(withRegistry(async ({ registry }, id: string) => registry.revoke(id)));

  keys
    .command("sync")
    .description("write every key's metadata to ClickHouse again (repairs failed mirror writes)")
    .action(async () => {
      const deps = await connect();
      try {
        const report = await deps.registry.sync();
        print(report);
        // The others are written; a non-zero exit tells scripts that some keys are not.
        if (report.failed.length > 0) {
          throw new AppError(
            "service_unavailable",
            `${report.failed.length} key(s) could not be mirrored (listed in "failed"); the other ${report.mirrored} were`,
          );
        }
      } finally {
        await deps.close();
      }
    });

  addQuotaCommands(program, keys, withRegistry);

  program
    .command("tiers")
    .description("pricing tiers (configuration: TIERS_FILE)")
    .command("list")
    .description("list the configured tiers")
    .action(withRegistry(async ({ tiers }) => tiers.list()));

  const withBilling = <A extends unknown[]>(action: (billing: AdminBilling, ...args: A) => Promise<unknown>) =>
    withRegistry(async (deps, ...args: A) => {
      if (!deps.billing) throw new AppError("config_invalid", "billing is not configured for this command");
      return action(deps.billing(), ...args);
    });

  const billing = program
    .command("billing")
    .description("Stripe billing: meters, prices and customer links; reconciliation (dry run without STRIPE_API_KEY)");

  billing
    .command("setup")
    .description("find or create each billed tier's meter and price, and link customers to Stripe (idempotent)")
    .option("--customer <id>", "link only this customer (repeatable); default: every customer", collect)
    .action(
      withBilling(async ({ setup }, options: { customer?: string[] }) =>
        setup.setup(options.customer ? { customerIds: options.customer } : {}),
      ),
    );

  billing
    .command("reconcile")
    .description("what each invoice should say from ClickHouse, against Stripe; every difference listed")
    .option("--customer <id>", "only this customer")
    .option("--period <YYYY-MM>", "month in the customer's time zone (default: the previous month)")
    .option("--no-stripe", "compare with the worker's records only (no Stripe calls)")
    .action(
      withBilling(async ({ reconciler }, options: { customer?: string; period?: string; stripe: boolean }) => {
        const query = parseOptions(reconcileQuerySchema, {
          ...(options.customer ? { customer_id: options.customer } : {}),
          ...(options.period ? { period: options.period } : {}),
          stripe: String(options.stripe),
        });
        return reconciler.reconcile(reconcileRequest(query));
      }),
    );

  // `customers` (create, list, ...) comes with the quota commands; link is billing's.
  const customers = program.commands.find((command) => command.name() === "customers") ?? program.command("customers");
  customers
    .command("link <id>")
    .description("link a customer to a Stripe customer and subscription: adopt the given ids, or find or create them")
    .option("--stripe-customer <cus_id>", "adopt this Stripe customer")
    .option("--stripe-subscription <sub_id>", "adopt this subscription (the tiers' prices are added when missing)")
    .action(
      withBilling(async ({ setup }, id: string, options: { stripeCustomer?: string; stripeSubscription?: string }) => {
        const input = parseOptions(linkInputSchema, {
          ...(options.stripeCustomer ? { stripe_customer_id: options.stripeCustomer } : {}),
          ...(options.stripeSubscription ? { stripe_subscription_id: options.stripeSubscription } : {}),
        });
        return setup.link(id, {
          ...(input.stripe_customer_id ? { stripeCustomerId: input.stripe_customer_id } : {}),
          ...(input.stripe_subscription_id ? { stripeSubscriptionId: input.stripe_subscription_id } : {}),
        });
      }),
    );

  return program;
}

function parseOptions<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new AppError("bad_request", describeIssues(result.error));
  return result.data;
}

/**
 * Runs the CLI with `argv` (process.argv form) and returns the exit code; errors are one
 * line on stderr, never a stack trace for a known error.
 */
export async function runCli(argv: string[], connect: () => Promise<RegistryDeps> | RegistryDeps, io: CliIo) {
  const program = buildCli(connect, io);
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    if (isAppError(error)) io.err.write(`keymeter: ${error.message}\n`);
    else io.err.write(`keymeter: unexpected error: ${error instanceof Error ? error.stack : String(error)}\n`);
    return 1;
  }
}

function defined(values: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
}

function wholeNumber(option: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new AppError("bad_request", `${option} must be a whole number >= ${min}`);
  return n;
}
