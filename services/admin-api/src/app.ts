import {
  authenticateKey,
  authorizeKey,
  bearerToken,
  createKeyInputSchema,
  hashesEqual,
  hashSecret,
  IpAllowlist,
  KEY_ID,
  type KeyRegistry,
  updateKeyInputSchema,
} from "@keymeter/shared/api-keys";
import type { TierCatalog } from "@keymeter/shared/billing";
import {
  AppError,
  checkHealth,
  errorBody,
  type HealthProbe,
  isAppError,
  type Logger,
  requestIdFrom,
} from "@keymeter/shared/runtime";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { z } from "zod";
import {
  type AdminBilling,
  linkInputSchema,
  reconcileQuerySchema,
  reconcileRequest,
  setupInputSchema,
} from "./billing";
import { type QuotaRoutesDeps, registerQuotaRoutes } from "./quota-routes";
import { audit as auditAction, parse } from "./request-input";

export interface AdminAppOptions {
  registry: KeyRegistry;
  /** Billing setup, links and reconciliation; the billing routes answer 404 without it. */
  billing?: AdminBilling;
  tiers: TierCatalog;
  logger: Logger;
  /** Accepted as an admin credential (ADMIN_BOOTSTRAP_TOKEN); compared by hash in constant time. */
  bootstrapToken?: string;
  /** Largest request body, bytes. */
  bodyLimit?: number;
  /** Dependencies for `/healthz` (Redis, which every route needs). */
  health?: HealthProbe;
  /** Customers, quota status and overrides (`/v1/customers`, `/v1/keys/:id/quota`). */
  quota?: QuotaRoutesDeps;
}

const idParams = z.object({ id: z.string().regex(KEY_ID, "expected a key id like key_XXXXXXXX") }).strict();
const customerParams = z
  .object({ id: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/, "expected a customer id") })
  .strict();
const listQuery = z
  .object({
    customer_id: z.string().min(1).max(128).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    offset: z.coerce.number().int().min(0).default(0),
  })
  .strict();
const rotateBody = z
  .object({
    grace_period_seconds: z
      .number()
      .int()
      .min(0)
      .max(90 * 86_400)
      .optional(),
  })
  .strict()
  .default({});
const emptyBody = z.object({}).strict().optional();

declare module "fastify" {
  interface FastifyRequest {
    /** Who made an admin call: a key id, or "bootstrap". */
    actor?: string;
  }
}

/**
 * The admin API: keys (create, list, show, update, rotate, revoke, sync) and tiers, behind
 * an admin-scoped API key. Every body, query and parameter goes through zod; errors use the
 * closed AppError codes; anything unexpected is a generic 500 with the request id.
 */
export function buildAdminApp(options: AdminAppOptions): FastifyInstance {
  const { registry, tiers, logger } = options;
  const bootstrapHash = options.bootstrapToken ? hashSecret(options.bootstrapToken) : undefined;
  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit ?? 16 * 1024,
    genReqId: (req) => requestIdFrom(req.headers["x-request-id"]),
  });

  app.addHook("onRequest", async (request, reply) => {
    reply.header("x-request-id", request.id);
    reply.header("cache-control", "no-store");
  });

  app.addHook("onResponse", async (request, reply) => {
    logger.info(
      {
        request_id: request.id,
        method: request.method,
        route: request.routeOptions.url ?? "(unmatched)",
        status: reply.statusCode,
        actor: request.actor,
        ms: Math.round(reply.elapsedTime * 100) / 100,
      },
      "admin request",
    );
  });

  const authenticate = async (request: FastifyRequest) => {
    const secret = bearerToken(request.headers.authorization);
    if (!secret) throw new AppError("unauthenticated", "missing credentials: send 'Authorization: Bearer <admin key>'");
    if (bootstrapHash && hashesEqual(hashSecret(secret), bootstrapHash)) {
      request.actor = "bootstrap";
      return;
    }
    const identity = await authenticateKey(
      secret,
      async (hash) => {
        const record = await registry.findByHash(hash);
        return record && { record };
      },
      Date.now(),
    );
    if (!identity.ok) throw identity.error;
    const { record } = identity.found;
    if (record.scope !== "admin") throw new AppError("forbidden", "the admin API needs an admin-scoped key");
    const path = request.url.split("?")[0] ?? "/";
    const refused = authorizeKey(
      record,
      new IpAllowlist(record.ip_allowlist),
      request.ip,
      { method: request.method, path },
      [],
    );
    if (refused) throw refused;
    request.actor = record.id;
  };

  app.get("/healthz", async (_request, reply) => {
    const { status, report } = await checkHealth(options.health);
    return reply.code(status).send(report);
  });

  app.register(
    async (v1) => {
      v1.addHook("preHandler", authenticate);

      v1.get("/tiers", async () => ({ tiers: tiers.list() }));
      if (options.quota) registerQuotaRoutes(v1, { ...options.quota, registry, logger });

      v1.post("/keys", async (request, reply) => {
        const issued = await registry.create(parse("body", createKeyInputSchema, request.body ?? {}));
        audit(logger, request, "create", issued.key.id);
        return reply.code(201).send({ key: issued.key, secret: issued.secret, mirrored: issued.mirrored });
      });

      v1.get("/keys", async (request) => {
        const query = parse("query", listQuery, request.query);
        const keys = await registry.list({
          ...(query.customer_id === undefined ? {} : { customerId: query.customer_id }),
          limit: query.limit,
          offset: query.offset,
        });
        return { keys };
      });

      v1.post("/keys/sync", async (request) => {
        parse("body", emptyBody, request.body ?? undefined);
        // 200 with the keys that could not be written: one bad record must not stop the repair.
        const report = await registry.sync();
        audit(logger, request, "sync");
        return report;
      });

      v1.get("/keys/:id", async (request) => ({
        key: await registry.show(parse("path", idParams, request.params).id),
      }));

      v1.patch("/keys/:id", async (request) => {
        const { id } = parse("path", idParams, request.params);
        const key = await registry.update(id, parse("body", updateKeyInputSchema, request.body ?? {}));
        audit(logger, request, "update", id);
        return { key };
      });

      v1.post("/keys/:id/rotate", async (request) => {
        const { id } = parse("path", idParams, request.params);
        const body = parse("body", rotateBody, request.body ?? undefined);
        const graceMs = body.grace_period_seconds === undefined ? undefined : body.grace_period_seconds * 1000;
        const issued = await registry.rotate(id, graceMs === undefined ? {} : { graceMs });
        audit(logger, request, "rotate", id);
        return { key: issued.key, secret: issued.secret, mirrored: issued.mirrored };
      });

      const billing = options.billing;
      if (billing) {
        v1.post("/billing/setup", async (request) => {
          const body = parse("body", setupInputSchema, request.body ?? {});
          const summary = await billing.setup.setup(body.customer_ids ? { customerIds: body.customer_ids } : {});
          auditAction(logger, request, "billing.setup");
          return summary;
        });

        v1.post("/customers/:id/stripe-link", async (request) => {
          const { id } = parse("path", customerParams, request.params);
          const body = parse("body", linkInputSchema, request.body ?? {});
          const link = await billing.setup.link(id, {
            ...(body.stripe_customer_id ? { stripeCustomerId: body.stripe_customer_id } : {}),
            ...(body.stripe_subscription_id ? { stripeSubscriptionId: body.stripe_subscription_id } : {}),
          });
          logger.info(
            { request_id: request.id, actor: request.actor, action: "stripe_link", customer_id: id },
            "admin action",
          );
          return link;
        });

        v1.get("/billing/reconciliation", async (request) =>
          billing.reconciler.reconcile(reconcileRequest(parse("query", reconcileQuerySchema, request.query))),
        );
      }

      v1.post("/keys/:id/revoke", async (request) => {
        const { id } = parse("path", idParams, request.params);
        parse("body", emptyBody, request.body ?? undefined);
        const key = await registry.revoke(id);
        audit(logger, request, "revoke", id);
        return { key };
      });
    },
    { prefix: "/v1" },
  );

  app.setNotFoundHandler((request, reply) => {
    sendError(reply, new AppError("not_found", `no route ${request.method} ${request.url.split("?")[0]}`), request.id);
  });

  app.setErrorHandler((error, request, reply) => {
    if (isAppError(error)) return sendError(reply, error, request.id);
    const code = (error as { code?: unknown }).code;
    if (code === "FST_ERR_CTP_BODY_TOO_LARGE") {
      return sendError(reply, new AppError("payload_too_large", "request body is too large"), request.id);
    }
    if (code === "FST_ERR_CTP_INVALID_MEDIA_TYPE") {
      return sendError(
        reply,
        new AppError("bad_request", "expected a JSON body (content-type: application/json)"),
        request.id,
      );
    }
    if (typeof code === "string" && code.startsWith("FST_ERR_CTP")) {
      return sendError(reply, new AppError("bad_request", "request body is not valid JSON"), request.id);
    }
    // A bug or an unreachable store: the details go to the log, never to the client.
    logger.error({ request_id: request.id, err: error }, "admin request failed");
    return sendError(reply, new AppError("internal", `internal error (request id ${request.id})`), request.id);
  });

  return app;
}

function sendError(reply: FastifyReply, error: AppError, requestId: string) {
  return reply.code(error.httpStatus).type("application/json; charset=utf-8").send(errorBody(error, requestId));
}

function audit(logger: Logger, request: FastifyRequest, action: string, keyId?: string) {
  auditAction(logger, request, action, { key_id: keyId });
}
