import type { z } from "zod";
import { randomBase62 } from "../api-keys/key-format";
import { describeIssues } from "../runtime/describe-issues";
import { AppError } from "../runtime/errors";
import type { Logger } from "../runtime/logger";
import { mgetMany, type Redis } from "../stores/redis";
import type { RedisKeys } from "../stores/redis-keys";
import {
  type CreateCustomerInput,
  type CustomerRecord,
  type CustomerView,
  createCustomerInputSchema,
  customerRecordSchema,
  customerView,
  MAX_WEBHOOKS,
  type UpdateCustomerInput,
  updateCustomerInputSchema,
  WEBHOOK_ID,
  type WebhookEndpoint,
  type WebhookInput,
  webhookInputSchema,
} from "./customer-record";

/**
 * Writes the record only if its stored version is the expected one (0: only if absent),
 * indexes the id and publishes the change, atomically. KEYS: record, id index. ARGV:
 * expected version, record JSON (empty: delete), channel, customer id, created score.
 */
const APPLY_SCRIPT = `
local current = redis.call('GET', KEYS[1])
local expected = tonumber(ARGV[1])
if expected == 0 then
  if current then return 0 end
else
  if not current then return -1 end
  if cjson.decode(current).version ~= expected then return 0 end
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`;

/** A new webhook endpoint's signing secret: here once, in the answer to the call that made it. */
export interface IssuedWebhookSecret {
  webhook_id: string;
  secret: string;
}

export interface CustomerRegistryOptions {
  redis: Redis;
  keys: RedisKeys;
  logger: Logger;
  now?: () => number;
}

/**
 * Customer records in Redis (AOF on): name, time zone, webhook endpoints and the Stripe ids
 * the billing worker fills in. Every write is a compare-and-set on the record's version,
 * published on `customer:changed`.
 */
export class CustomerRegistry {
  private readonly redis: Redis;
  private readonly keys: RedisKeys;
  private readonly logger: Logger;
  private readonly now: () => number;

  constructor(options: CustomerRegistryOptions) {
    this.redis = options.redis;
    this.keys = options.keys;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  /** Creates a customer; the webhook signing secrets are returned once. */
  async create(
    input: CreateCustomerInput,
  ): Promise<{ customer: CustomerView; webhook_secrets: IssuedWebhookSecret[] }> {
    const parsed = parseInput(createCustomerInputSchema, input);
    const at = new Date(this.now()).toISOString();
    const webhooks = parsed.webhooks.map((hook) => newEndpoint(hook.url, at));
    const record: CustomerRecord = { ...parsed, webhooks, created_at: at, updated_at: at, version: 1 };
    const result = await this.apply(record.id, 0, record);
    if (result === 0) throw new AppError("conflict", `customer ${record.id} already exists`);
    this.logger.info(
      { customer_id: record.id, time_zone: record.time_zone, webhooks: webhooks.length },
      "customer created",
    );
    return {
      customer: customerView(record),
      webhook_secrets: webhooks.map((hook) => ({ webhook_id: hook.id, secret: hook.secret })),
    };
  }

  /** The stored record (with signing secrets: for the worker, never for a response), or undefined. */
  async get(customerId: string): Promise<CustomerRecord | undefined> {
    return this.parse(await this.redis.get(this.keys.customerRecord(customerId)));
  }

  /** Records of many customers in one round trip; absent ones are missing from the map. */
  async getMany(customerIds: readonly string[]): Promise<Map<string, CustomerRecord>> {
    const ids = [...new Set(customerIds)];
    const found = new Map<string, CustomerRecord>();
    const raw = await mgetMany(
      this.redis,
      ids.map((id) => this.keys.customerRecord(id)),
    );
    raw.forEach((value, i) => {
      const record = this.parse(value);
      const id = ids[i];
      if (record && id !== undefined) found.set(id, record);
    });
    return found;
  }

  async show(customerId: string): Promise<CustomerView> {
    return customerView(await this.require(customerId));
  }

  /** Customers, newest first. */
  async list(options: { limit?: number; offset?: number } = {}): Promise<CustomerView[]> {
    const limit = options.limit ?? 100;
    const offset = options.offset ?? 0;
    const ids = await this.redis.zrevrange(this.keys.customerIds, offset, offset + limit - 1);
    if (ids.length === 0) return [];
    return [...(await this.getMany(ids)).values()].map(customerView);
  }

  /** Changes name, time zone or Stripe ids. A new time zone moves the current period's bounds at the next check. */
  async update(customerId: string, input: UpdateCustomerInput): Promise<CustomerView> {
    const patch = parseInput(updateCustomerInputSchema, input);
    const record = await this.change(customerId, (current) => ({ ...current, ...patch }));
    this.logger.info({ customer_id: customerId, fields: Object.keys(patch) }, "customer updated");
    return customerView(record);
  }

  /** Deletes the record; the customer's keys then behave as a UTC customer without webhooks. */
  async delete(customerId: string): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.require(customerId);
      if ((await this.apply(customerId, current.version, undefined)) === 1) {
        this.logger.info({ customer_id: customerId }, "customer deleted");
        return;
      }
    }
    throw new AppError("conflict", `customer ${customerId} is being changed concurrently; try again`, {
      retryable: true,
    });
  }

  /** Adds a webhook endpoint; its signing secret is returned once. */
  async addWebhook(
    customerId: string,
    input: WebhookInput,
  ): Promise<{ customer: CustomerView; webhook_secret: IssuedWebhookSecret }> {
    const { url } = parseInput(webhookInputSchema, input);
    const endpoint = newEndpoint(url, new Date(this.now()).toISOString());
    const record = await this.change(customerId, (current) => {
      if (current.webhooks.length >= MAX_WEBHOOKS) {
        throw new AppError("bad_request", `a customer has at most ${MAX_WEBHOOKS} webhook endpoints`);
      }
      return { ...current, webhooks: [...current.webhooks, endpoint] };
    });
    this.logger.info({ customer_id: customerId, webhook_id: endpoint.id }, "webhook endpoint added");
    return { customer: customerView(record), webhook_secret: { webhook_id: endpoint.id, secret: endpoint.secret } };
  }

  async removeWebhook(customerId: string, webhookId: string): Promise<CustomerView> {
    const record = await this.change(customerId, (current) => {
      if (!current.webhooks.some((hook) => hook.id === webhookId)) {
        throw new AppError(
          "not_found",
          `customer ${customerId} has no webhook ${WEBHOOK_ID.test(webhookId) ? webhookId : "with that id"}`,
        );
      }
      return { ...current, webhooks: current.webhooks.filter((hook) => hook.id !== webhookId) };
    });
    this.logger.info({ customer_id: customerId, webhook_id: webhookId }, "webhook endpoint removed");
    return customerView(record);
  }

  private async require(customerId: string): Promise<CustomerRecord> {
    const record = await this.get(customerId);
    if (!record) throw new AppError("not_found", `no customer ${customerId.slice(0, 128)}`);
    return record;
  }

  /** Read, modify, compare-and-set on the version; retried when another writer got there first. */
  private async change(
    customerId: string,
    modify: (current: CustomerRecord) => CustomerRecord,
  ): Promise<CustomerRecord> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await this.require(customerId);
      const next: CustomerRecord = {
        ...modify(current),
        id: current.id,
        updated_at: new Date(this.now()).toISOString(),
        version: current.version + 1,
      };
      const result = await this.apply(customerId, current.version, next);
      if (result === -1) throw new AppError("not_found", `no customer ${customerId}`);
      if (result === 1) return next;
    }
    throw new AppError("conflict", `customer ${customerId} is being changed concurrently; try again`, {
      retryable: true,
    });
  }

  private async apply(customerId: string, expectedVersion: number, record: CustomerRecord | undefined) {
    const result = await this.redis.eval(
      APPLY_SCRIPT,
      2,
      this.keys.customerRecord(customerId),
      this.keys.customerIds,
      expectedVersion,
      record ? JSON.stringify(record) : "",
      this.keys.customerChangedChannel,
      customerId,
      record ? Date.parse(record.created_at) : 0,
    );
    return Number(result);
  }

  private parse(value: string | null): CustomerRecord | undefined {
    if (value === null) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(value);
    } catch {
      json = undefined;
    }
    const parsed = customerRecordSchema.safeParse(json);
    if (!parsed.success) {
      // Never log the value: it holds signing secrets.
      this.logger.error({ problem: describeIssues(parsed.error) }, "unreadable customer record in redis");
      return undefined;
    }
    return parsed.data;
  }
}

function newEndpoint(url: string, at: string): WebhookEndpoint {
  return { id: `wh_${randomBase62(16)}`, url, secret: `whsec_${randomBase62(32)}`, created_at: at };
}

function parseInput<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (!result.success) throw new AppError("bad_request", describeIssues(result.error));
  return result.data;
}
