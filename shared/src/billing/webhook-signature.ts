import { createHmac, timingSafeEqual } from "node:crypto";

/** The header that carries the signature: `Keymeter-Signature: t=<unix seconds>,v1=<hex>`. */
export const SIGNATURE_HEADER = "keymeter-signature";
/** The header that carries the event id (stable across retries: deduplicate on it). */
export const WEBHOOK_ID_HEADER = "keymeter-webhook-id";

/** HMAC-SHA256 of `<timestamp>.<body>` with the endpoint's secret, hex. */
export function webhookSignature(secret: string, timestampSeconds: number, body: string): string {
  return createHmac("sha256", secret).update(`${timestampSeconds}.${body}`).digest("hex");
}

/** The `Keymeter-Signature` header value for `body` sent at `timestampSeconds`. */
export function signatureHeader(secret: string, timestampSeconds: number, body: string): string {
  return `t=${timestampSeconds},v1=${webhookSignature(secret, timestampSeconds, body)}`;
}

/**
 * Checks a `Keymeter-Signature` header as a receiver should: the HMAC over the raw body in
 * constant time, and a timestamp within `toleranceSeconds` of now (replays of old deliveries
 * fail). Any `v1=` entry may match (several appear while a secret is being rolled).
 */
export function verifyWebhookSignature(
  secret: string,
  header: string | undefined,
  body: string,
  options: { toleranceSeconds?: number; nowSeconds?: number } = {},
): boolean {
  if (!header) return false;
  const parts = header.split(",").map((part) => part.trim().split("="));
  const timestamp = Number(parts.find(([name]) => name === "t")?.[1]);
  if (!Number.isInteger(timestamp)) return false;
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (options.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(webhookSignature(secret, timestamp, body), "hex");
  return parts
    .filter(([name, value]) => name === "v1" && value !== undefined && /^[0-9a-f]{64}$/.test(value))
    .some(([, value]) => timingSafeEqual(Buffer.from(value ?? "", "hex"), expected));
}
