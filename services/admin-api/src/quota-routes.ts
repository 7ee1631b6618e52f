import { customerIdSchema, KEY_ID, type KeyRegistry } from "@keymeter/shared/api-keys";
import {
  type CustomerRegistry,
  createCustomerInputSchema,
  type QuotaOverrides,
  type QuotaStatusService,
  quotaOverrideInputSchema,
  updateCustomerInputSchema,
  WEBHOOK_ID,
  webhookInputSchema,
} from "@keymeter/shared/billing";
import type { Logger } from "@keymeter/shared/runtime";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import { audit, parse } from "./request-input";

/** What the customer and quota routes need; the admin app adds the key registry and logger. */
export interface QuotaRoutesDeps {
  customers: CustomerRegistry;
  overrides: QuotaOverrides;
  status: QuotaStatusService;
}

const customerParams = z.object({ id: customerIdSchema }).strict();
const webhookParams = z
  .object({ id: customerIdSchema, webhookId: z.string().regex(WEBHOOK_ID, "expected a webhook id like wh_XXXX") })
  .strict();
const keyParams = z.object({ id: z.string().regex(KEY_ID, "expected a key id like key_XXXXXXXX") }).strict();
const listQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    offset: z.coerce.number().int().min(0).default(0),
  })
  .strict();
const emptyBody = z.object({}).strict().optional();

/**
 * `/v1/customers` (CRUD and webhook endpoints; signing secrets are in the creating answer
 * only), quota status per key and per customer, and per-key quota overrides. Registered
 * inside the authenticated `/v1` scope, so the admin key check and error body apply.
 */
export function registerQuotaRoutes(
  v1: FastifyInstance,
  deps: QuotaRoutesDeps & { registry: KeyRegistry; logger: Logger },
): void {
  const { customers, overrides, status, registry, logger } = deps;

  v1.post("/customers", async (request, reply) => {
    const created = await customers.create(parse("body", createCustomerInputSchema, request.body ?? {}));
    audit(logger, request, "customer.create", { customer_id: created.customer.id });
    return reply.code(201).send({ ...created, note: "store the webhook secrets now: they are shown only once" });
  });

  v1.get("/customers", async (request) => {
    const query = parse("query", listQuery, request.query);
    return { customers: await customers.list(query) };
  });

  v1.get("/customers/:id", async (request) => ({
    customer: await customers.show(parse("path", customerParams, request.params).id),
  }));

  v1.patch("/customers/:id", async (request) => {
    const { id } = parse("path", customerParams, request.params);
    const customer = await customers.update(id, parse("body", updateCustomerInputSchema, request.body ?? {}));
    audit(logger, request, "customer.update", { customer_id: id });
    return { customer };
  });

  v1.delete("/customers/:id", async (request) => {
    const { id } = parse("path", customerParams, request.params);
    await customers.delete(id);
    audit(logger, request, "customer.delete", { customer_id: id });
    return { deleted: id };
  });

  v1.post("/customers/:id/webhooks", async (request, reply) => {
    const { id } = parse("path", customerParams, request.params);
    const added = await customers.addWebhook(id, parse("body", webhookInputSchema, request.body ?? {}));
    audit(logger, request, "customer.webhook.add", { customer_id: id });
    return reply.code(201).send({ ...added, note: "store the webhook secret now: it is shown only once" });
  });

  v1.delete("/customers/:id/webhooks/:webhookId", async (request) => {
    const { id, webhookId } = parse("path", webhookParams, request.params);
    const customer = await customers.removeWebhook(id, webhookId);
    audit(logger, request, "customer.webhook.remove", { customer_id: id });
    return { customer };
  });

  v1.get("/customers/:id/quota", async (request) => ({
    quota: await status.customerStatus(parse("path", customerParams, request.params).id),
  }));

  v1.get("/keys/:id/quota", async (request) => ({
    quota: await status.keyStatus(parse("path", keyParams, request.params).id),
  }));

  v1.put("/keys/:id/quota-override", async (request) => {
    const { id } = parse("path", keyParams, request.params);
    const input = parse("body", quotaOverrideInputSchema, request.body ?? {});
    await registry.show(id);
    const override = await overrides.set(id, input);
    audit(logger, request, "key.quota_override.set", { key_id: id });
    return { override };
  });

  v1.delete("/keys/:id/quota-override", async (request) => {
    const { id } = parse("path", keyParams, request.params);
    parse("body", emptyBody, request.body ?? undefined);
    await registry.show(id);
    const removed = await overrides.clear(id);
    audit(logger, request, "key.quota_override.clear", { key_id: id });
    return { removed };
  });
}
