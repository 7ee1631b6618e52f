import { z } from "zod";
import { canonicalPathOf } from "./canonical-path";

/**
 * What a key may do. `read-only`: GET, HEAD and OPTIONS outside admin routes; `read-write`:
 * every method outside admin routes; `admin`: everything. `routes`, when not empty,
 * restricts the key further to those path prefixes (matched on whole segments).
 */
export const SCOPES = ["read-only", "read-write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];
export const scopeSchema = z.enum(SCOPES);

const READ_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/**
 * A route prefix: an absolute path without dot segments (also encoded), query, fragment or
 * trailing slash, stored in the canonical form requests are checked in (`canonicalPathOf`), so
 * `/v1/%72eports` is stored as `/v1/reports` and matches; what a request path could never be
 * (`/admin;x`, `/v1/a%2561`, `/admin.`) is refused.
 */
export const routePrefixSchema = z
  .string()
  .max(256)
  .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/, "expected a path prefix starting with /")
  .refine((value) => !value.split("/").some((segment) => /^(\.|%2e){1,2}$/i.test(segment)), {
    message: "path prefix must not contain . or .. segments",
  })
  .transform((value, context) => {
    const canonical = canonicalPathOf(value);
    if (!canonical.ok) {
      context.addIssue({ code: "custom", message: `path prefix is not acceptable: ${canonical.reason}` });
      return z.NEVER;
    }
    return canonical.path.length > 1 ? canonical.path.replace(/\/+$/, "") : canonical.path;
  });

/** True when `path` is `prefix` or below it: `/v1/users` covers `/v1/users/42`, not `/v1/usersX`. */
export function pathHasPrefix(path: string, prefix: string): boolean {
  if (prefix === "/") return true;
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47);
}

export interface ScopeRequest {
  method: string;
  /** The normalized path (dot segments resolved, no query). */
  path: string;
}

export interface ScopeGrant {
  scope: Scope;
  routes: readonly string[];
}

/**
 * Why a request is outside the key's scope, or undefined when it is inside. The reason is
 * safe to show the client.
 */
export function scopeViolation(
  grant: ScopeGrant,
  request: ScopeRequest,
  adminPrefixes: readonly string[],
): string | undefined {
  if (grant.routes.length > 0 && !grant.routes.some((prefix) => pathHasPrefix(request.path, prefix))) {
    return "this key is not allowed on this route";
  }
  if (grant.scope === "admin") return undefined;
  // Case-insensitive: an upstream that treats /ADMIN as /admin must not open a way around.
  const lowerPath = request.path.toLowerCase();
  if (adminPrefixes.some((prefix) => pathHasPrefix(lowerPath, prefix.toLowerCase()))) {
    return "this route needs an admin key";
  }
  if (grant.scope === "read-only" && !READ_METHODS.has(request.method)) {
    return `this key is read-only; ${request.method} needs a read-write key`;
  }
  return undefined;
}
