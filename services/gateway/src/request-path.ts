import { canonicalPath } from "@keymeter/shared/api-keys";

/**
 * A request target in the form the gateway both checks scopes against and forwards (see
 * `canonicalPath` in `@keymeter/shared/api-keys`: the same form route prefixes are stored in).
 */
export interface RequestTarget {
  path: string;
  /** Query string with its `?`, or "". */
  search: string;
  searchParams: URLSearchParams;
}

export type ParsedTarget = { ok: true; target: RequestTarget } | { ok: false; reason: string };

const BASE = "http://gateway.invalid";

/** Parses an origin-form (`/path?q`) or absolute-form request target into its canonical form. */
export function parseRequestTarget(raw: string): ParsedTarget {
  let url: URL;
  try {
    // Origin-form (`/path`) is joined to a fixed base by string, so `//host/x` stays a path.
    url = raw.startsWith("/") ? new URL(BASE + raw) : new URL(raw);
  } catch {
    return { ok: false, reason: "not a valid request target" };
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return { ok: false, reason: "not an http URL" };
  const canonical = canonicalPath(url.pathname);
  if (!canonical.ok) return canonical;
  return { ok: true, target: { path: canonical.path, search: url.search, searchParams: url.searchParams } };
}
