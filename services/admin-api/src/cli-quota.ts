import { AppError } from "@keymeter/shared/runtime";
import type { Command } from "commander";
import type { QuotaRoutesDeps } from "./quota-routes";
import type { RegistryDeps } from "./registry";

const collect = (value: string, previous: string[] = []) => [...previous, value];

type WithRegistry = <A extends unknown[]>(
  action: (deps: RegistryDeps, ...args: A) => Promise<unknown>,
) => (...args: A) => Promise<void>;

function quotaOf(deps: RegistryDeps): QuotaRoutesDeps {
  if (!deps.quota) throw new AppError("service_unavailable", "customers and quotas are not configured for this CLI");
  return deps.quota;
}

/** `keymeter customers ...` and `keymeter keys quota|set-quota|clear-quota`. */
export function addQuotaCommands(program: Command, keys: Command, withRegistry: WithRegistry): void {
  const customers = program
    .command("customers")
    .description("customers: time zone (billing periods), webhook endpoints, Stripe ids, quota status");

  customers
    .command("create <id>")
    .description("create a customer; webhook signing secrets are printed once")
    .option("--name <name>", "a label for people")
    .option("--time-zone <zone>", "IANA time zone of the billing periods (default UTC)")
    .option("--webhook <url>", "a threshold webhook endpoint (repeatable)", collect)
    .action(
      withRegistry(async (deps, id: string, options: { name?: string; timeZone?: string; webhook?: string[] }) => {
        const created = await quotaOf(deps).customers.create({
          id,
          ...(options.name === undefined ? {} : { name: options.name }),
          ...(options.timeZone === undefined ? {} : { time_zone: options.timeZone }),
          webhooks: (options.webhook ?? []).map((url) => ({ url })),
        });
        return { ...created, note: "store the webhook secrets now: they are shown only once" };
      }),
    );

  customers
    .command("list")
    .description("list customers, newest first")
    .option("--limit <n>", "at most this many", "100")
    .option("--offset <n>", "skip this many", "0")
    .action(
      withRegistry(async (deps, options: { limit: string; offset: string }) =>
        quotaOf(deps).customers.list({
          limit: wholeNumber("--limit", options.limit, 1),
          offset: wholeNumber("--offset", options.offset, 0),
        }),
      ),
    );

  customers
    .command("show <id>")
    .description("show one customer (webhook secrets only as their last characters)")
    .action(withRegistry(async (deps, id: string) => quotaOf(deps).customers.show(id)));

  customers
    .command("update <id>")
    .description("change a customer's name, time zone or Stripe ids")
    .option("--name <name>", "new label")
    .option("--time-zone <zone>", "new IANA time zone")
    .option("--stripe-customer <id>", "Stripe customer id (cus_...), or 'none'")
    .option("--stripe-subscription <id>", "Stripe subscription id (sub_...), or 'none'")
    .action(
      withRegistry(async (deps, id: string, options: Record<string, string | undefined>) => {
        const none = (value: string | undefined) => (value === "none" ? null : value);
        const patch = Object.fromEntries(
          Object.entries({
            name: options.name,
            time_zone: options.timeZone,
            stripe_customer_id: none(options.stripeCustomer),
            stripe_subscription_id: none(options.stripeSubscription),
          }).filter(([, value]) => value !== undefined),
        );
        return quotaOf(deps).customers.update(id, patch);
      }),
    );

  customers
    .command("delete <id>")
    .description("delete a customer record (its keys then count in UTC months, without webhooks)")
    .action(
      withRegistry(async (deps, id: string) => {
        await quotaOf(deps).customers.delete(id);
        return { deleted: id };
      }),
    );

  customers
    .command("add-webhook <id> <url>")
    .description("add a threshold webhook endpoint; its signing secret is printed once")
    .action(
      withRegistry(async (deps, id: string, url: string) => ({
        ...(await quotaOf(deps).customers.addWebhook(id, { url })),
        note: "store the webhook secret now: it is shown only once",
      })),
    );

  customers
    .command("remove-webhook <id> <webhookId>")
    .description("remove a webhook endpoint")
    .action(
      withRegistry(async (deps, id: string, webhookId: string) => quotaOf(deps).customers.removeWebhook(id, webhookId)),
    );

  customers
    .command("quota <id>")
    .description("month-to-date usage, quota, remaining, overage and flag of each of the customer's keys")
    .action(withRegistry(async (deps, id: string) => quotaOf(deps).status.customerStatus(id)));

  keys
    .command("quota <id>")
    .description("a key's month-to-date usage, quota, remaining, overage, flag and period end")
    .action(withRegistry(async (deps, id: string) => quotaOf(deps).status.keyStatus(id)));

  keys
    .command("set-quota <id>")
    .description("override a key's monthly quota (a raised quota unflags the key at once)")
    .requiredOption("--monthly-quota <n>", "units per month, or 'unlimited'")
    .option("--reason <text>", "why (kept with the override)")
    .action(
      withRegistry(async (deps, id: string, options: { monthlyQuota: string; reason?: string }) => {
        await deps.registry.show(id);
        const quota =
          options.monthlyQuota === "unlimited" ? null : wholeNumber("--monthly-quota", options.monthlyQuota, 1);
        return quotaOf(deps).overrides.set(id, { monthly_quota: quota, reason: options.reason ?? "" });
      }),
    );

  keys
    .command("clear-quota <id>")
    .description("remove a key's quota override (its tier's quota applies again)")
    .action(
      withRegistry(async (deps, id: string) => {
        await deps.registry.show(id);
        return { removed: await quotaOf(deps).overrides.clear(id) };
      }),
    );
}

function wholeNumber(option: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new AppError("bad_request", `${option} must be a whole number >= ${min}`);
  return n;
}
