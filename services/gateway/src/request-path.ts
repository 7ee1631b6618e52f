import { canonicalPath } from "@keymeter/shared/api-keys";

/**
 * A request target in the form the gateway both checks scopes against and forwards (see
 * `canonicalPath` in `@keymeter/shared/api-keys`: the same form route prefixes are stored in).
 */
export class RequestTarget {
  private params: URLSearchParams | undefined;

  constructor(
    readonly path: string,
    /** Query string with its `?`, or "". */
    readonly search: string,
  ) {}

  /** The query's parameters, parsed on first use. */
  get searchParams(): URLSearchParams {
    this.params ??= new URLSearchParams(this.search);
    return this.params;
  }

  /** False when no parameter can be named `api_key` (also percent-encoded): its query need not be parsed. */
  get mayHoldApiKey(): boolean {
    return this.search.includes("api_key") || this.search.includes("%");
  }
}

export type ParsedTarget = { ok: true; target: RequestTarget } | { ok: false; reason: string };

const BASE = "http://gateway.invalid";
/**
 * Origin-form targets the URL parser and `canonicalPath` would return unchanged: characters
 * neither of them encodes, decodes or refuses, no `//`, and no segment ending in a dot (which
 * covers `.` and `..`). Most requests look like this; they skip the URL parser.
 */
const PLAIN_PATH = /^\/[A-Za-z0-9\-_~!$&'()*+,=:@./]*$/;
const PLAIN_QUERY = /^\?[A-Za-z0-9\-._~!$&()*+,;=:@/?%]*$/;

/** Parses an origin-form (`/path?q`) or absolute-form request target into its canonical form. */
export function parseRequestTarget(raw: string): ParsedTarget {
  const plain = plainTarget(raw);
  if (plain) return { ok: true, target: plain };
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
  return { ok: true, target: new RequestTarget(canonical.path, url.search) };
}

function plainTarget(raw: string): RequestTarget | undefined {
  const queryAt = raw.indexOf("?");
  const path = queryAt === -1 ? raw : raw.slice(0, queryAt);
  if (!PLAIN_PATH.test(path) || path.includes("//") || path.includes("./") || path.endsWith(".")) return undefined;
  if (queryAt === -1) return new RequestTarget(path, "");
  const search = raw.slice(queryAt);
  if (!PLAIN_QUERY.test(search)) return undefined;
  // A bare `?` is an empty query, as the URL parser has it.
  return new RequestTarget(path, search === "?" ? "" : search);
}
