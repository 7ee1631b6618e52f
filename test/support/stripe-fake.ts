import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Stripe from "stripe";
import { arr, type FormObject, type FormValue, obj, parseStripeForm, str } from "./stripe-form";

/**
 * A recording Stripe fake for the billing tests: an HTTP server on 127.0.0.1 that the real
 * `stripe` package talks to (`fake.client()`), with state in memory. It implements what a
 * billing sync needs (Billing Meters, meter events, meter event summaries, products, prices,
 * customers, subscriptions, invoice previews) with Stripe's request and response shapes, and
 * enforces Stripe's documented meter event rules:
 *
 * - `identifier` unique within 24 hours: a repeat is refused with 400 `invalid_request_error`
 *   "An event already exists with identifier X." and `Stripe-Should-Retry: false` (what Stripe
 *   answers, as reported publicly; Stripe sends no `code` with it, neither does the fake);
 * - `timestamp` within the past 35 days and at most 5 minutes ahead;
 * - `payload[value]` a whole number;
 * - one concurrent call per (customer, meter): an overlapping call gets 429 `lock_timeout`
 *   with `Stripe-Should-Retry: true`;
 * - a token bucket of `meterEventsPerSecond` (live mode: 1,000): above it, 429 `rate_limit`.
 *
 * Where Stripe validates asynchronously (an unknown customer or event name, an invalid value
 * on v1 meter events are reported later in meter error reports), the fake refuses at once:
 * stricter, so a test cannot pass by sending what Stripe would drop. Stripe aggregates
 * asynchronously; the fake's summaries are immediately consistent. `Idempotency-Key` works as
 * in Stripe: within 24 hours a repeat with the same parameters replays the first 2xx answer
 * (`Idempotent-Replayed: true`), other parameters get 400 `idempotency_error`, a concurrent
 * repeat 409 `idempotency_key_in_use`.
 */
export type MeterFormula = "sum" | "count" | "last";

export interface StripeFakeOptions {
  /** Meter events per second the token bucket admits (live mode's limit is 1,000). */
  meterEventsPerSecond?: number;
  /** Bucket size; defaults to one second's worth. */
  meterEventBurst?: number;
  /** How long a meter event call holds its (customer, meter) lock, so tests can make calls overlap. */
  meterEventLatencyMs?: number;
  /** Start the clock at this time (ms since the epoch); it then runs with real time unless `frozen`. */
  startAt?: number;
  /** Time stands still except through `setNow`/`advance` (deterministic rate-limit tests). */
  frozen?: boolean;
  /** A `Retry-After` (seconds) to send with 429 `rate_limit` answers; Stripe usually sends none. */
  retryAfterSeconds?: number;
}

/** One request as the fake received it, for assertions. */
export interface RecordedRequest {
  method: string;
  path: string;
  params: FormObject;
  idempotencyKey: string | undefined;
  stripeVersion: string | undefined;
  /** Fake-clock time the request arrived (ms). */
  at: number;
  status: number;
  errorCode: string | undefined;
}

/** A meter event Stripe accepted. */
export interface AcceptedMeterEvent {
  identifier: string;
  eventName: string;
  meterId: string;
  customer: string;
  value: number;
  /** Event time, seconds since the epoch. */
  timestamp: number;
  /** Fake-clock time it was accepted (ms). */
  receivedAt: number;
  /** Arrival order, the tie-break between equal timestamps for `last`. */
  sequence: number;
}

interface MeterRecord {
  id: string;
  created: number;
  updated: number;
  displayName: string;
  eventName: string;
  formula: MeterFormula;
  customerKey: string;
  valueKey: string;
  status: "active" | "inactive";
}

interface PriceTier {
  upTo: number | null;
  unitAmountDecimal: string;
  flatAmount: number;
}

interface PriceRecord {
  id: string;
  created: number;
  currency: string;
  product: string;
  lookupKey: string | null;
  active: boolean;
  metadata: Record<string, string>;
  interval: string;
  usageType: "metered" | "licensed";
  meter: string | null;
  billingScheme: "per_unit" | "tiered";
  unitAmountDecimal: string | null;
  tiersMode: "graduated" | "volume" | null;
  tiers: PriceTier[];
}

interface SubscriptionItemRecord {
  id: string;
  created: number;
  price: string;
}

interface SubscriptionRecord {
  id: string;
  customer: string;
  created: number;
  /** Seconds; the first period runs from `created` to here, then monthly from here. */
  anchor: number;
  /** `billing_cycle_anchor_config`: later periods start on this UTC day (clamped) and time each month. */
  anchorConfig: AnchorConfig | undefined;
  metadata: Record<string, string>;
  items: SubscriptionItemRecord[];
}

interface AnchorConfig {
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** The instant (seconds) in the UTC month `monthIndex` (months since 1970) a config anchors to. */
function configOccurrence(config: AnchorConfig, monthIndex: number): number {
  const year = Math.floor(monthIndex / 12);
  const month = monthIndex - year * 12;
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return Date.UTC(year, month, Math.min(config.day, lastDay), config.hour, config.minute, config.second) / 1000;
}

class FakeStripeError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly code?: string,
    readonly param?: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const DAY = 86_400;
const LOCK_MESSAGE =
  "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are making multiple concurrent requests to a single object, make your requests serially or at a lower rate.";

export class StripeFake {
  readonly requests: RecordedRequest[] = [];
  readonly meterEvents: AcceptedMeterEvent[] = [];
  readonly apiKey = "sk_test_keymeter_fake";

  private readonly meters = new Map<string, MeterRecord>();
  private readonly products = new Map<string, { id: string; name: string; created: number }>();
  private readonly prices = new Map<string, PriceRecord>();
  private readonly customers = new Map<string, Record<string, unknown>>();
  private readonly subscriptions = new Map<string, SubscriptionRecord>();
  /** identifier -> accepted time (ms), for the 24-hour uniqueness rule. */
  private readonly identifiers = new Map<string, number>();
  private readonly idempotent = new Map<string, { fingerprint: string; status: number; body: unknown; at: number }>();
  private readonly idempotencyInFlight = new Set<string>();
  private readonly locks = new Set<string>();
  private tokens: number;
  private tokensAt: number;
  private clockOffset = 0;
  private frozenAt: number | undefined;
  private sequence = 0;
  private server: Server | undefined;
  private portNumber = 0;

  private constructor(private readonly options: StripeFakeOptions) {
    if (options.startAt !== undefined) this.setNow(options.startAt);
    if (options.frozen) this.frozenAt = this.now();
    this.tokens = this.burst;
    this.tokensAt = this.now();
  }

  /** Starts a fake on 127.0.0.1 on a free port. */
  static async start(options: StripeFakeOptions = {}): Promise<StripeFake> {
    const fake = new StripeFake(options);
    const server = createServer((req, res) => {
      fake.handle(req, res).catch((error: unknown) => {
        res.statusCode = 500;
        res.end(JSON.stringify({ error: { type: "api_error", message: String(error) } }));
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    fake.server = server;
    fake.portNumber = (server.address() as AddressInfo).port;
    return fake;
  }

  get host(): string {
    return "127.0.0.1";
  }

  get port(): number {
    return this.portNumber;
  }

  /** A `stripe` client pointed at this fake; SDK retries are off unless asked for. */
  client(config: Stripe.StripeConfig = {}): Stripe {
    return new Stripe(this.apiKey, {
      host: this.host,
      port: this.port,
      protocol: "http",
      maxNetworkRetries: 0,
      ...config,
    });
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ------------------------------------------------------------------ clock

  /** The fake's time in ms. */
  now(): number {
    return this.frozenAt ?? Date.now() + this.clockOffset;
  }

  setNow(ms: number | Date): void {
    const target = typeof ms === "number" ? ms : ms.getTime();
    if (this.frozenAt !== undefined) this.frozenAt = target;
    else this.clockOffset = target - Date.now();
    this.tokensAt = Math.min(this.tokensAt, target);
  }

  advance(ms: number): void {
    this.setNow(this.now() + ms);
  }

  // ---------------------------------------------------------------- helpers

  /** Answers with this status and error code so far (e.g. 429 `rate_limit` or `lock_timeout`). */
  count(status: number, errorCode?: string): number {
    return this.requests.filter(
      (request) => request.status === status && (errorCode === undefined || request.errorCode === errorCode),
    ).length;
  }

  /** Requests to one path (e.g. `/v1/billing/meter_events`). */
  requestsTo(method: string, path: string): RecordedRequest[] {
    return this.requests.filter((request) => request.method === method && request.path === path);
  }

  /** The meter with this event name (active first). */
  meterByEventName(eventName: string): { id: string; formula: MeterFormula } | undefined {
    const meter = this.activeMeter(eventName);
    return meter ? { id: meter.id, formula: meter.formula } : undefined;
  }

  /**
   * What Stripe would aggregate for a customer on a meter over [start, end) (seconds):
   * `sum` adds values, `count` counts events, `last` takes the latest event by timestamp
   * (equal timestamps: the one received last). No event: 0 (Stripe bills nothing).
   */
  meterTotal(query: { customer: string; eventName: string; start: number; end: number }): number {
    const meter = this.activeMeter(query.eventName);
    if (!meter) throw new Error(`no meter for event name ${query.eventName}`);
    return this.aggregate(meter, query.customer, query.start, query.end);
  }

  // ------------------------------------------------------------ HTTP plumbing

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://fake");
    const method = req.method ?? "GET";
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString("utf8");
    const params = parseStripeForm(method === "GET" ? url.search.slice(1) : body);
    const idempotencyKey = header(req, "idempotency-key");
    const record: RecordedRequest = {
      method,
      path: url.pathname,
      params,
      idempotencyKey,
      stripeVersion: header(req, "stripe-version"),
      at: this.now(),
      status: 0,
      errorCode: undefined,
    };
    this.requests.push(record);

    const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
      record.status = status;
      res.writeHead(status, { "Content-Type": "application/json", "Request-Id": `req_${id()}`, ...headers });
      res.end(JSON.stringify(payload));
    };

    const fingerprint = `${method} ${url.pathname} ${body}`;
    let holdsKey = false;
    try {
      const auth = header(req, "authorization") ?? "";
      if (!/^Bearer (sk|rk)_test_\S+$/.test(auth)) {
        throw new FakeStripeError(401, "invalid_request_error", "Invalid API Key provided.");
      }
      if (method === "POST" && idempotencyKey) {
        const saved = this.idempotent.get(idempotencyKey);
        // Stripe may drop a key after 24 hours; the fake drops it then, the less favourable case.
        if (saved && this.now() - saved.at >= DAY * 1000) this.idempotent.delete(idempotencyKey);
        else if (saved) {
          if (saved.fingerprint !== fingerprint) {
            throw new FakeStripeError(
              400,
              "idempotency_error",
              `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
            );
          }
          send(saved.status, saved.body, { "Idempotent-Replayed": "true", "Idempotency-Key": idempotencyKey });
          return;
        }
        if (this.idempotencyInFlight.has(idempotencyKey)) {
          throw new FakeStripeError(
            409,
            "idempotency_error",
            "There is currently another in-progress request using this Stripe token (probably the same idempotency key).",
            "idempotency_key_in_use",
          );
        }
        this.idempotencyInFlight.add(idempotencyKey);
        holdsKey = true;
      }
      const result = await this.route(method, url.pathname, params);
      // Stripe saves an idempotent result once the endpoint executed; the fake saves 2xx only.
      if (method === "POST" && idempotencyKey) {
        this.idempotent.set(idempotencyKey, { fingerprint, status: 200, body: result, at: this.now() });
      }
      send(200, result, idempotencyKey ? { "Idempotency-Key": idempotencyKey } : {});
    } catch (error) {
      if (error instanceof FakeStripeError) {
        record.errorCode = error.code;
        const payload: Record<string, string> = { type: error.type, message: error.message };
        if (error.code) payload.code = error.code;
        if (error.param) payload.param = error.param;
        send(error.status, { error: payload }, error.headers);
      } else {
        send(500, { error: { type: "api_error", message: `fake: ${String(error)}` } });
      }
    } finally {
      if (holdsKey && idempotencyKey) this.idempotencyInFlight.delete(idempotencyKey);
    }
  }

  private async route(method: string, path: string, params: FormObject): Promise<unknown> {
    const segments = path.split("/").filter(Boolean);
    const [version, first, second, third, fourth] = segments;
    if (version !== "v1") throw unrecognized(method, path);
    const key = `${method} ${[first, second, third, fourth].filter(Boolean).length}`;
    if (first === "billing" && second === "meters") {
      if (key === "POST 2") return this.createMeter(params);
      if (key === "GET 2") return this.listMeters(params);
      if (key === "GET 3" && third) return this.meterJson(this.meterById(third));
      if (key === "GET 4" && third && fourth === "event_summaries") return this.eventSummaries(third, params);
    }
    if (first === "billing" && second === "meter_events" && key === "POST 2") return this.createMeterEvent(params);
    if (first === "products") {
      if (key === "POST 1") return this.productJson(this.createProduct(params));
      if (key === "GET 1")
        return this.list(
          path,
          [...this.products.values()].map((p) => this.productJson(p)),
          params,
        );
      if (key === "GET 2" && second) return this.productJson(this.productById(second));
    }
    if (first === "prices") {
      if (key === "POST 1") return this.priceJson(this.createPrice(params));
      if (key === "GET 1") return this.listPrices(path, params);
      if (key === "GET 2" && second) return this.priceJson(this.priceById(second));
    }
    if (first === "customers") {
      if (key === "POST 1") return this.createCustomer(params);
      if (key === "GET 2" && second === "search") return this.searchCustomers(params);
      if (key === "GET 2" && second) return this.customerById(second);
    }
    if (first === "subscriptions") {
      if (key === "POST 1") return this.subscriptionJson(this.createSubscription(params));
      if (key === "GET 1") return this.listSubscriptions(path, params);
      if (key === "GET 2" && second) return this.subscriptionJson(this.subscriptionById(second));
    }
    if (first === "subscription_items" && key === "POST 1") return this.createSubscriptionItem(params);
    if (first === "invoices" && second === "create_preview" && key === "POST 2") return this.previewInvoice(params);
    throw unrecognized(method, path);
  }

  private list(url: string, items: Array<{ id?: unknown }>, params: FormObject) {
    const limit = Math.min(Math.max(Number(str(params, "limit") ?? 10), 1), 100);
    const after = str(params, "starting_after");
    let start = 0;
    if (after) {
      const index = items.findIndex((item) => item.id === after);
      start = index < 0 ? items.length : index + 1;
    }
    const data = items.slice(start, start + limit);
    return { object: "list", data, has_more: start + limit < items.length, url };
  }

  // ------------------------------------------------------------------ meters

  private createMeter(params: FormObject) {
    const eventName = required(params, "event_name");
    const displayName = required(params, "display_name");
    const formula = str(obj(params, "default_aggregation"), "formula");
    if (formula !== "sum" && formula !== "count" && formula !== "last") {
      throw invalid(
        "default_aggregation[formula]",
        "Invalid default_aggregation[formula]: must be one of sum, count or last",
      );
    }
    if (eventName.length > 100) throw invalid("event_name", "event_name must be at most 100 characters");
    if (this.activeMeter(eventName)) {
      throw new FakeStripeError(
        400,
        "invalid_request_error",
        `An active meter with event_name '${eventName}' already exists.`,
        "resource_already_exists",
        "event_name",
      );
    }
    const mapping = obj(params, "customer_mapping");
    const mappingType = str(mapping, "type") ?? "by_id";
    if (mappingType !== "by_id") throw invalid("customer_mapping[type]", "customer_mapping[type] must be by_id");
    const created = this.seconds();
    const meter: MeterRecord = {
      id: `mtr_test_${id()}`,
      created,
      updated: created,
      displayName,
      eventName,
      formula,
      customerKey: str(mapping, "event_payload_key") ?? "stripe_customer_id",
      valueKey: str(obj(params, "value_settings"), "event_payload_key") ?? "value",
      status: "active",
    };
    this.meters.set(meter.id, meter);
    return this.meterJson(meter);
  }

  private listMeters(params: FormObject) {
    const status = str(params, "status");
    const meters = [...this.meters.values()].filter((meter) => !status || meter.status === status);
    return this.list(
      "/v1/billing/meters",
      meters.map((meter) => this.meterJson(meter)),
      params,
    );
  }

  private meterById(meterId: string): MeterRecord {
    const meter = this.meters.get(meterId);
    if (!meter) throw missing("billing.meter", meterId);
    return meter;
  }

  private activeMeter(eventName: string): MeterRecord | undefined {
    return [...this.meters.values()].find((meter) => meter.eventName === eventName && meter.status === "active");
  }

  private meterJson(meter: MeterRecord) {
    return {
      id: meter.id,
      object: "billing.meter",
      created: meter.created,
      customer_mapping: { event_payload_key: meter.customerKey, type: "by_id" },
      default_aggregation: { formula: meter.formula },
      display_name: meter.displayName,
      event_name: meter.eventName,
      event_time_window: null,
      livemode: false,
      status: meter.status,
      status_transitions: { deactivated_at: null },
      updated: meter.updated,
      value_settings: { event_payload_key: meter.valueKey },
    };
  }

  private async createMeterEvent(params: FormObject) {
    if (!this.takeToken()) {
      const headers: Record<string, string> = {};
      if (this.options.retryAfterSeconds !== undefined) headers["Retry-After"] = String(this.options.retryAfterSeconds);
      throw new FakeStripeError(
        429,
        "invalid_request_error",
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
        "rate_limit",
        undefined,
        headers,
      );
    }
    const eventName = required(params, "event_name");
    const meter = this.activeMeter(eventName);
    if (!meter) throw invalid("event_name", `No active meter was found with event_name '${eventName}'.`);
    const payload = obj(params, "payload");
    const customer = str(payload, meter.customerKey);
    if (!customer)
      throw invalid(`payload[${meter.customerKey}]`, `Missing required param: payload[${meter.customerKey}].`);
    if (!this.customers.has(customer))
      throw invalid(`payload[${meter.customerKey}]`, `No such customer: '${customer}'`);
    const rawValue = str(payload, meter.valueKey);
    if (rawValue === undefined)
      throw invalid(`payload[${meter.valueKey}]`, `Missing required param: payload[${meter.valueKey}].`);
    if (!/^-?\d+$/.test(rawValue) || !Number.isSafeInteger(Number(rawValue))) {
      throw new FakeStripeError(
        400,
        "invalid_request_error",
        `The value '${rawValue}' for payload[${meter.valueKey}] is not a valid whole number.`,
        "meter_event_invalid_value",
        `payload[${meter.valueKey}]`,
      );
    }
    const now = this.seconds();
    const rawTimestamp = str(params, "timestamp");
    if (rawTimestamp !== undefined && !/^\d+$/.test(rawTimestamp)) {
      throw new FakeStripeError(
        400,
        "invalid_request_error",
        "Invalid integer: timestamp",
        "parameter_invalid_integer",
        "timestamp",
      );
    }
    const timestamp = rawTimestamp === undefined ? now : Number(rawTimestamp);
    if (timestamp < now - 35 * DAY) {
      throw new FakeStripeError(
        400,
        "invalid_request_error",
        "Timestamp must be within the past 35 calendar days.",
        "timestamp_too_far_in_past",
        "timestamp",
      );
    }
    if (timestamp > now + 5 * 60) {
      throw new FakeStripeError(
        400,
        "invalid_request_error",
        "Timestamp must not be more than 5 minutes in the future.",
        "timestamp_in_future",
        "timestamp",
      );
    }
    const identifier = str(params, "identifier") ?? `fake_${id()}`;
    if (identifier.length > 100) throw invalid("identifier", "identifier must be at most 100 characters");

    const lock = `${customer} ${meter.id}`;
    if (this.locks.has(lock)) {
      throw new FakeStripeError(429, "invalid_request_error", LOCK_MESSAGE, "lock_timeout", undefined, {
        "Stripe-Should-Retry": "true",
      });
    }
    this.locks.add(lock);
    try {
      const latency = this.options.meterEventLatencyMs ?? 0;
      if (latency > 0) await new Promise((resolve) => setTimeout(resolve, latency));
      const seenAt = this.identifiers.get(identifier);
      if (seenAt !== undefined && this.now() - seenAt < DAY * 1000) {
        throw new FakeStripeError(
          400,
          "invalid_request_error",
          `An event already exists with identifier ${identifier}.`,
          undefined,
          undefined,
          { "Stripe-Should-Retry": "false" },
        );
      }
      this.identifiers.set(identifier, this.now());
      const value = Number(rawValue);
      this.meterEvents.push({
        identifier,
        eventName,
        meterId: meter.id,
        customer,
        value,
        timestamp,
        receivedAt: this.now(),
        sequence: this.sequence++,
      });
      return {
        object: "billing.meter_event",
        created: this.seconds(),
        event_name: eventName,
        identifier,
        livemode: false,
        payload: { [meter.customerKey]: customer, [meter.valueKey]: rawValue },
        timestamp,
      };
    } finally {
      this.locks.delete(lock);
    }
  }

  private eventSummaries(meterId: string, params: FormObject) {
    const meter = this.meterById(meterId);
    const customer = required(params, "customer");
    const start = integer(params, "start_time");
    const end = integer(params, "end_time");
    if (start % 60 !== 0) throw invalid("start_time", "start_time must be aligned with minute boundaries.");
    if (end % 60 !== 0) throw invalid("end_time", "end_time must be aligned with minute boundaries.");
    if (end <= start) throw invalid("end_time", "end_time must be after start_time.");
    const window = str(params, "value_grouping_window");
    if (window !== undefined && window !== "day" && window !== "hour") {
      throw invalid("value_grouping_window", "value_grouping_window must be day or hour");
    }
    const step = window === "day" ? DAY : window === "hour" ? 3600 : end - start;
    const summaries = [];
    for (let from = start; from < end; from += step) {
      const to = Math.min(from + step, end);
      summaries.push({
        id: `mtrusg_${digest(`${meter.id} ${customer} ${from} ${to}`)}`,
        object: "billing.meter_event_summary",
        aggregated_value: this.aggregate(meter, customer, from, to),
        end_time: to,
        livemode: false,
        meter: meter.id,
        start_time: from,
      });
    }
    return this.list(`/v1/billing/meters/${meter.id}/event_summaries`, summaries, params);
  }

  private aggregate(meter: MeterRecord, customer: string, start: number, end: number): number {
    const events = this.meterEvents.filter(
      (event) =>
        event.meterId === meter.id && event.customer === customer && event.timestamp >= start && event.timestamp < end,
    );
    if (meter.formula === "count") return events.length;
    if (meter.formula === "sum") return events.reduce((total, event) => total + event.value, 0);
    let latest: AcceptedMeterEvent | undefined;
    for (const event of events) {
      if (
        !latest ||
        event.timestamp > latest.timestamp ||
        (event.timestamp === latest.timestamp && event.sequence > latest.sequence)
      ) {
        latest = event;
      }
    }
    return latest?.value ?? 0;
  }

  private takeToken(): boolean {
    const rate = this.options.meterEventsPerSecond ?? 1000;
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.tokensAt) / 1000) * rate);
    this.tokensAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private get burst(): number {
    return this.options.meterEventBurst ?? this.options.meterEventsPerSecond ?? 1000;
  }

  // ------------------------------------------------------- products, prices

  private createProduct(params: FormObject) {
    const product = { id: `prod_${id()}`, name: required(params, "name"), created: this.seconds() };
    this.products.set(product.id, product);
    return product;
  }

  private productById(productId: string) {
    const product = this.products.get(productId);
    if (!product) throw missing("product", productId);
    return product;
  }

  private productJson(product: { id: string; name: string; created: number }) {
    return {
      id: product.id,
      object: "product",
      active: true,
      created: product.created,
      default_price: null,
      description: null,
      images: [],
      livemode: false,
      marketing_features: [],
      metadata: {},
      name: product.name,
      package_dimensions: null,
      shippable: null,
      statement_descriptor: null,
      tax_code: null,
      type: "service",
      unit_label: null,
      updated: product.created,
      url: null,
    };
  }

  private createPrice(params: FormObject): PriceRecord {
    const currency = required(params, "currency").toLowerCase();
    if (!/^[a-z]{3}$/.test(currency)) throw invalid("currency", `Invalid currency: ${currency}`);
    let product = str(params, "product");
    const productData = obj(params, "product_data");
    if (product) this.productById(product);
    else if (productData) product = this.createProduct(productData).id;
    else throw invalid("product", "You must specify either `product` or `product_data` when creating a price.");
    const recurring = obj(params, "recurring");
    if (!recurring) throw invalid("recurring", "The fake only supports recurring prices (recurring[interval]).");
    const interval = str(recurring, "interval");
    if (!interval || !["day", "week", "month", "year"].includes(interval)) {
      throw invalid("recurring[interval]", "Missing required param: recurring[interval].");
    }
    const usageType = str(recurring, "usage_type") ?? "licensed";
    if (usageType !== "metered" && usageType !== "licensed")
      throw invalid("recurring[usage_type]", "Invalid usage_type");
    const meter = str(recurring, "meter") ?? null;
    if (usageType === "metered" && !meter) {
      throw invalid("recurring[meter]", "Metered prices must be backed by a meter: set recurring[meter].");
    }
    if (meter) this.meterById(meter);
    const billingScheme = str(params, "billing_scheme") ?? "per_unit";
    if (billingScheme !== "per_unit" && billingScheme !== "tiered")
      throw invalid("billing_scheme", "Invalid billing_scheme");
    let unitAmountDecimal: string | null = null;
    let tiersMode: PriceRecord["tiersMode"] = null;
    const tiers: PriceTier[] = [];
    if (billingScheme === "per_unit") {
      unitAmountDecimal = amountDecimal(params, "unit_amount");
    } else {
      const mode = str(params, "tiers_mode");
      if (mode !== "graduated" && mode !== "volume") throw invalid("tiers_mode", "Missing required param: tiers_mode.");
      tiersMode = mode;
      const rawTiers = arr(params, "tiers");
      if (rawTiers.length === 0) throw invalid("tiers", "Missing required param: tiers.");
      rawTiers.forEach((raw, index) => {
        const tier = typeof raw === "object" && !Array.isArray(raw) ? raw : {};
        const upTo = str(tier, "up_to");
        if (upTo === undefined)
          throw invalid(`tiers[${index}][up_to]`, `Missing required param: tiers[${index}][up_to].`);
        if (upTo !== "inf" && !/^\d+$/.test(upTo)) throw invalid(`tiers[${index}][up_to]`, "Invalid up_to");
        tiers.push({
          upTo: upTo === "inf" ? null : Number(upTo),
          unitAmountDecimal: amountDecimal(tier, "unit_amount", `tiers[${index}]`),
          flatAmount: Number(str(tier, "flat_amount") ?? 0),
        });
      });
      if (tiers[tiers.length - 1]?.upTo !== null) throw invalid("tiers", "The last tier must have up_to=inf.");
    }
    const lookupKey = str(params, "lookup_key") ?? null;
    if (lookupKey) {
      const holder = [...this.prices.values()].find((price) => price.lookupKey === lookupKey);
      if (holder) {
        if (str(params, "transfer_lookup_key") !== "true") {
          throw new FakeStripeError(
            400,
            "invalid_request_error",
            `A price (\`${holder.id}\`) already uses that lookup key.`,
            "lookup_key_already_exists",
            "lookup_key",
          );
        }
        holder.lookupKey = null;
      }
    }
    const price: PriceRecord = {
      id: `price_${id()}`,
      created: this.seconds(),
      currency,
      product,
      lookupKey,
      active: str(params, "active") !== "false",
      metadata: stringMap(obj(params, "metadata")),
      interval,
      usageType,
      meter,
      billingScheme,
      unitAmountDecimal,
      tiersMode,
      tiers,
    };
    this.prices.set(price.id, price);
    return price;
  }

  private listPrices(url: string, params: FormObject) {
    const lookupKeys = arr(params, "lookup_keys").filter((key): key is string => typeof key === "string");
    const active = str(params, "active");
    const product = str(params, "product");
    const prices = [...this.prices.values()].filter(
      (price) =>
        (lookupKeys.length === 0 || (price.lookupKey !== null && lookupKeys.includes(price.lookupKey))) &&
        (active === undefined || String(price.active) === active) &&
        (product === undefined || price.product === product),
    );
    return this.list(
      url,
      prices.map((price) => this.priceJson(price)),
      params,
    );
  }

  private priceById(priceId: string): PriceRecord {
    const price = this.prices.get(priceId);
    if (!price) throw missing("price", priceId);
    return price;
  }

  private priceJson(price: PriceRecord) {
    const unitAmount =
      price.unitAmountDecimal !== null && /^\d+$/.test(price.unitAmountDecimal)
        ? Number(price.unitAmountDecimal)
        : null;
    return {
      id: price.id,
      object: "price",
      active: price.active,
      billing_scheme: price.billingScheme,
      created: price.created,
      currency: price.currency,
      custom_unit_amount: null,
      livemode: false,
      lookup_key: price.lookupKey,
      metadata: price.metadata,
      nickname: null,
      product: price.product,
      recurring: {
        interval: price.interval,
        interval_count: 1,
        meter: price.meter,
        trial_period_days: null,
        usage_type: price.usageType,
      },
      tax_behavior: "unspecified",
      tiers_mode: price.tiersMode,
      transform_quantity: null,
      type: "recurring",
      unit_amount: unitAmount,
      unit_amount_decimal: price.unitAmountDecimal,
    };
  }

  // -------------------------------------------------------------- customers

  private createCustomer(params: FormObject) {
    const customer = {
      id: `cus_${id()}`,
      object: "customer",
      address: null,
      balance: 0,
      created: this.seconds(),
      currency: null,
      default_source: null,
      delinquent: false,
      description: str(params, "description") ?? null,
      discount: null,
      email: str(params, "email") ?? null,
      invoice_prefix: id().slice(0, 8).toUpperCase(),
      invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
      livemode: false,
      metadata: stringMap(obj(params, "metadata")),
      name: str(params, "name") ?? null,
      next_invoice_sequence: 1,
      phone: null,
      preferred_locales: [],
      shipping: null,
      tax_exempt: "none",
      test_clock: null,
    };
    this.customers.set(customer.id, customer);
    return customer;
  }

  private customerById(customerId: string) {
    const customer = this.customers.get(customerId);
    if (!customer) throw missing("customer", customerId);
    return customer;
  }

  /** Supports the one query form billing uses: `metadata['key']:'value'`. */
  private searchCustomers(params: FormObject) {
    const query = required(params, "query");
    const match = /^metadata\['([^']+)'\]:'([^']*)'$/.exec(query.trim());
    if (!match) throw invalid("query", `The fake supports only metadata['key']:'value' queries, got ${query}`);
    const [, key = "", value = ""] = match;
    const data = [...this.customers.values()].filter(
      (customer) => (customer.metadata as Record<string, string>)[key] === value,
    );
    return { object: "search_result", data, has_more: false, next_page: null, url: "/v1/customers/search" };
  }

  // ---------------------------------------------------------- subscriptions

  private createSubscription(params: FormObject): SubscriptionRecord {
    const customer = required(params, "customer");
    this.customerById(customer);
    const rawItems = arr(params, "items");
    if (rawItems.length === 0) throw invalid("items", "Missing required param: items.");
    const created = this.seconds();
    const items = rawItems.map((raw, index) => this.subscriptionItem(raw, `items[${index}]`, created));
    const rawAnchor = str(params, "billing_cycle_anchor");
    const rawConfig = obj(params, "billing_cycle_anchor_config");
    let anchor = created;
    let anchorConfig: AnchorConfig | undefined;
    if (rawConfig) {
      if (rawAnchor !== undefined) {
        throw invalid(
          "billing_cycle_anchor_config",
          "You may only specify one of billing_cycle_anchor and billing_cycle_anchor_config.",
        );
      }
      const field = (key: string, max: number, required = false) => {
        const raw = str(rawConfig, key);
        if (raw === undefined && !required) return 0;
        const value = Number(raw);
        if (!Number.isInteger(value) || value < (key === "day_of_month" ? 1 : 0) || value > max) {
          throw invalid(`billing_cycle_anchor_config[${key}]`, `Invalid billing_cycle_anchor_config[${key}]: ${raw}`);
        }
        return value;
      };
      anchorConfig = {
        day: field("day_of_month", 31, true),
        hour: field("hour", 23),
        minute: field("minute", 59),
        second: field("second", 59),
      };
      // The first occurrence after creation.
      const createdDate = new Date(created * 1000);
      let monthIndex = createdDate.getUTCFullYear() * 12 + createdDate.getUTCMonth();
      while (configOccurrence(anchorConfig, monthIndex) <= created) monthIndex += 1;
      anchor = configOccurrence(anchorConfig, monthIndex);
    } else if (rawAnchor !== undefined) {
      anchor = Number(rawAnchor);
      if (!Number.isInteger(anchor) || anchor < created) {
        throw invalid("billing_cycle_anchor", "billing_cycle_anchor must be a timestamp in the future.");
      }
    }
    const subscription: SubscriptionRecord = {
      id: `sub_${id()}`,
      customer,
      created,
      anchor,
      anchorConfig,
      metadata: stringMap(obj(params, "metadata")),
      items,
    };
    this.subscriptions.set(subscription.id, subscription);
    return subscription;
  }

  private subscriptionItem(raw: FormValue, param: string, created: number): SubscriptionItemRecord {
    const item = typeof raw === "object" && !Array.isArray(raw) ? raw : {};
    const priceId = str(item, "price");
    if (!priceId) throw invalid(`${param}[price]`, `Missing required param: ${param}[price].`);
    const price = this.priceById(priceId);
    if (price.usageType === "metered" && str(item, "quantity") !== undefined) {
      throw invalid(`${param}[quantity]`, "Quantity should not be specified where usage_type is `metered`.");
    }
    return { id: `si_${id()}`, created, price: price.id };
  }

  private createSubscriptionItem(params: FormObject) {
    const subscription = this.subscriptionById(required(params, "subscription"));
    const item = this.subscriptionItem(params, "price", this.seconds());
    const price = this.priceById(item.price);
    if (subscription.items.some((existing) => existing.price === price.id)) {
      throw invalid("price", "Cannot add multiple subscription items with the same price.");
    }
    subscription.items.push(item);
    return this.subscriptionItemJson(subscription, item);
  }

  private subscriptionById(subscriptionId: string): SubscriptionRecord {
    const subscription = this.subscriptions.get(subscriptionId);
    if (!subscription) throw missing("subscription", subscriptionId);
    return subscription;
  }

  private listSubscriptions(url: string, params: FormObject) {
    const customer = str(params, "customer");
    const subscriptions = [...this.subscriptions.values()].filter((s) => !customer || s.customer === customer);
    return this.list(
      url,
      subscriptions.map((subscription) => this.subscriptionJson(subscription)),
      params,
    );
  }

  /** The period containing `at` (seconds): first from creation to the anchor, then monthly from the anchor. */
  private period(subscription: SubscriptionRecord, at: number): { start: number; end: number } {
    if (at < subscription.anchor) return { start: subscription.created, end: subscription.anchor };
    const config = subscription.anchorConfig;
    if (config) {
      const anchorDate = new Date(subscription.anchor * 1000);
      let monthIndex = anchorDate.getUTCFullYear() * 12 + anchorDate.getUTCMonth();
      while (configOccurrence(config, monthIndex + 1) <= at) monthIndex += 1;
      return { start: configOccurrence(config, monthIndex), end: configOccurrence(config, monthIndex + 1) };
    }
    let start = subscription.anchor;
    let months = 1;
    for (;;) {
      const end = addMonths(subscription.anchor, months);
      if (at < end) return { start, end };
      start = end;
      months += 1;
    }
  }

  private subscriptionJson(subscription: SubscriptionRecord) {
    const period = this.period(subscription, this.seconds());
    const items = subscription.items.map((item) => this.subscriptionItemJson(subscription, item));
    return {
      id: subscription.id,
      object: "subscription",
      billing_cycle_anchor: subscription.anchor,
      cancel_at: null,
      cancel_at_period_end: false,
      canceled_at: null,
      collection_method: "charge_automatically",
      created: subscription.created,
      currency: this.priceById(subscription.items[0]?.price ?? "").currency,
      customer: subscription.customer,
      days_until_due: null,
      default_payment_method: null,
      description: null,
      discounts: [],
      ended_at: null,
      items: {
        object: "list",
        data: items,
        has_more: false,
        url: `/v1/subscription_items?subscription=${subscription.id}`,
      },
      latest_invoice: null,
      livemode: false,
      metadata: subscription.metadata,
      start_date: subscription.created,
      status: "active",
      test_clock: null,
      trial_end: null,
      trial_start: null,
      // Kept for readers of older shapes; the current API has the period on each item.
      current_period_start: period.start,
      current_period_end: period.end,
    };
  }

  private subscriptionItemJson(subscription: SubscriptionRecord, item: SubscriptionItemRecord) {
    const period = this.period(subscription, this.seconds());
    const price = this.priceById(item.price);
    return {
      id: item.id,
      object: "subscription_item",
      created: item.created,
      current_period_end: period.end,
      current_period_start: period.start,
      discounts: [],
      metadata: {},
      price: this.priceJson(price),
      quantity: price.usageType === "metered" ? undefined : 1,
      subscription: subscription.id,
      tax_rates: [],
    };
  }

  // --------------------------------------------------------------- invoices

  private previewInvoice(params: FormObject) {
    const subscriptionId = str(params, "subscription");
    const customerId = str(params, "customer");
    let subscription: SubscriptionRecord | undefined;
    if (subscriptionId) subscription = this.subscriptionById(subscriptionId);
    else if (customerId) subscription = [...this.subscriptions.values()].find((s) => s.customer === customerId);
    else throw invalid("customer", "Missing required param: customer or subscription.");
    if (!subscription) {
      throw new FakeStripeError(
        400,
        "invalid_request_error",
        "No upcoming invoices for customer",
        "invoice_upcoming_none",
      );
    }
    if (customerId && subscription.customer !== customerId) {
      throw invalid("subscription", "The subscription does not belong to that customer.");
    }
    const period = this.period(subscription, this.seconds());
    const lines = subscription.items.map((item) => {
      const price = this.priceById(item.price);
      const meter = price.meter ? this.meterById(price.meter) : undefined;
      const quantity = meter ? Math.max(0, this.aggregate(meter, subscription.customer, period.start, period.end)) : 1;
      const amount = priceAmount(price, quantity);
      const product = this.productById(price.product);
      return {
        id: `il_tmp_${id()}`,
        object: "line_item",
        amount,
        currency: price.currency,
        description: `${quantity} × ${product.name}`,
        discount_amounts: [],
        discountable: true,
        discounts: [],
        invoice: null,
        livemode: false,
        metadata: {},
        parent: {
          type: "subscription_item_details",
          invoice_item_details: null,
          subscription_item_details: {
            invoice_item: null,
            proration: false,
            proration_details: { credited_items: null },
            subscription: subscription.id,
            subscription_item: item.id,
          },
        },
        period: { start: period.start, end: period.end },
        pretax_credit_amounts: [],
        pricing: {
          type: "price_details",
          price_details: { price: price.id, product: price.product },
          unit_amount_decimal: price.unitAmountDecimal,
        },
        quantity,
        subtotal: amount,
        taxes: [],
      };
    });
    const total = lines.reduce((sum, line) => sum + line.amount, 0);
    const currency = lines[0]?.currency ?? "usd";
    return {
      id: `upcoming_in_${id()}`,
      object: "invoice",
      amount_due: total,
      amount_paid: 0,
      amount_remaining: total,
      auto_advance: false,
      billing_reason: "upcoming",
      collection_method: "charge_automatically",
      created: this.seconds(),
      currency,
      customer: subscription.customer,
      lines: { object: "list", data: lines, has_more: false, url: "/v1/invoices/upcoming/lines" },
      livemode: false,
      metadata: {},
      parent: {
        type: "subscription_details",
        quote_details: null,
        subscription_details: { metadata: subscription.metadata, subscription: subscription.id },
      },
      period_end: period.end,
      period_start: period.start,
      status: "draft",
      subtotal: total,
      total,
    };
  }

  private seconds(): number {
    return Math.floor(this.now() / 1000);
  }
}

/** Amount in minor units for a quantity: per unit, graduated or volume tiers; rounded like an invoice line. */
function priceAmount(price: PriceRecord, quantity: number): number {
  if (price.billingScheme === "per_unit") return Math.round(quantity * Number(price.unitAmountDecimal ?? 0));
  if (price.tiersMode === "volume") {
    const tier = price.tiers.find((candidate) => candidate.upTo === null || quantity <= candidate.upTo);
    if (!tier || quantity === 0) return 0;
    return Math.round(quantity * Number(tier.unitAmountDecimal) + tier.flatAmount);
  }
  let amount = 0;
  let below = 0;
  for (const tier of price.tiers) {
    const top = tier.upTo ?? Number.POSITIVE_INFINITY;
    const units = Math.max(0, Math.min(quantity, top) - below);
    if (units > 0) amount += units * Number(tier.unitAmountDecimal) + tier.flatAmount;
    below = top;
    if (quantity <= top) break;
  }
  return Math.round(amount);
}

function addMonths(seconds: number, months: number): number {
  const date = new Date(seconds * 1000);
  const day = date.getUTCDate();
  date.setUTCDate(1);
  date.setUTCMonth(date.getUTCMonth() + months);
  const lastDay = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 0)).getUTCDate();
  date.setUTCDate(Math.min(day, lastDay));
  return Math.floor(date.getTime() / 1000);
}

function amountDecimal(form: FormObject, key: string, prefix = ""): string {
  const whole = str(form, key);
  const decimal = str(form, `${key}_decimal`);
  const name = prefix ? `${prefix}[${key}]` : key;
  if (whole !== undefined && decimal !== undefined) {
    throw invalid(name, `You may only specify one of these parameters: ${key}, ${key}_decimal.`);
  }
  const value = decimal ?? whole;
  if (value === undefined) throw invalid(name, `Missing required param: ${name} or ${name}_decimal.`);
  if (!/^\d+(\.\d{1,12})?$/.test(value)) throw invalid(name, `Invalid decimal: ${value}`);
  return value;
}

function required(form: FormObject, key: string): string {
  const value = str(form, key);
  if (value === undefined || value === "") throw invalid(key, `Missing required param: ${key}.`);
  return value;
}

function integer(form: FormObject, key: string): number {
  const value = required(form, key);
  if (!/^\d+$/.test(value))
    throw new FakeStripeError(
      400,
      "invalid_request_error",
      `Invalid integer: ${value}`,
      "parameter_invalid_integer",
      key,
    );
  return Number(value);
}

function stringMap(form: FormObject | undefined): Record<string, string> {
  const result: Record<string, string> = {};
  for (const [key, value] of Object.entries(form ?? {})) if (typeof value === "string") result[key] = value;
  return result;
}

function invalid(param: string, message: string): FakeStripeError {
  const code = message.startsWith("Missing required param") ? "parameter_missing" : undefined;
  return new FakeStripeError(400, "invalid_request_error", message, code, param);
}

function missing(kind: string, objectId: string): FakeStripeError {
  return new FakeStripeError(404, "invalid_request_error", `No such ${kind}: '${objectId}'`, "resource_missing", "id");
}

function unrecognized(method: string, path: string): FakeStripeError {
  return new FakeStripeError(
    404,
    "invalid_request_error",
    `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
  );
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function id(): string {
  return randomBytes(12).toString("base64url").replace(/[-_]/g, "x");
}

function digest(text: string): string {
  return createHash("sha256").update(text).digest("base64url").slice(0, 24).replace(/[-_]/g, "x");
}
