import { containsSecret } from "../api-keys/key-format";

/** Turns a request path into the route recorded in usage events (`/v1/users/:id`). */
export type RouteTemplater = (path: string, method: string) => string;

const NUMERIC = /^\d+$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Long hex strings (object ids, hashes) explode cardinality as surely as numbers do. */
const HEX_ID = /^[0-9a-f]{16,}$/i;

/** What a path segment holding an API key secret becomes: a secret must never reach an event. */
export const REDACTED_SEGMENT = ":redacted";

/** True when a path segment holds a secret, also percent-encoded (`km%5Flive%5F...`). */
function holdsSecret(segment: string): boolean {
  if (containsSecret(segment)) return true;
  if (!segment.includes("%")) return false;
  try {
    return containsSecret(decodeURIComponent(segment));
  } catch {
    return false; // not valid percent-encoding: nothing more to decode
  }
}

/**
 * The default: numeric, UUID and long hexadecimal segments become `:id`, segments holding
 * an API key secret become `:redacted`; the result is cut to the 256 characters the event
 * schema allows. Callers with real route tables (Fastify's
 * `routeOptions.url`, Express's `req.route.path`) should pass their own templater.
 */
export const defaultRouteTemplate: RouteTemplater = (path) => {
  const segments = path.split("/");
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i] ?? "";
    if (NUMERIC.test(segment) || UUID.test(segment) || HEX_ID.test(segment)) segments[i] = ":id";
    else if (holdsSecret(segment)) segments[i] = REDACTED_SEGMENT;
  }
  const route = segments.join("/");
  return route.length > 256 ? route.slice(0, 256) : route;
};
