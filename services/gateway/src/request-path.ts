/**
 * The canonical form of a request target, which the gateway both checks scopes against and
 * forwards, so an upstream cannot read a path differently from how it was authorized:
 * dot segments resolved (also `%2e%2e`), runs of slashes collapsed, percent-encoded
 * unreserved characters decoded (`/%61dmin` is `/admin`). Encoded slashes, backslashes and
 * NUL are refused: upstreams disagree about them.
 */
export interface RequestTarget {
  path: string;
  /** Query string with its `?`, or "". */
  search: string;
  searchParams: URLSearchParams;
}

const BASE = "http://gateway.invalid";
const AMBIGUOUS = /%(2f|5c|00)/i;
const UNRESERVED_ESCAPE = /%([0-9a-f]{2})/gi;

export function parseRequestTarget(raw: string): RequestTarget | undefined {
  let url: URL;
  try {
    // Origin-form (`/path`) is joined to a fixed base by string, so `//host/x` stays a path.
    url = raw.startsWith("/") ? new URL(BASE + raw) : new URL(raw);
  } catch {
    return undefined;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return undefined;
  if (AMBIGUOUS.test(url.pathname)) return undefined;
  const decoded = url.pathname.replace(UNRESERVED_ESCAPE, (encoded, hex: string) => {
    const char = String.fromCharCode(Number.parseInt(hex, 16));
    return /[A-Za-z0-9\-._~]/.test(char) ? char : encoded.toUpperCase();
  });
  // Decoding may have produced new dot segments (`%2e`): resolve once more.
  const resolved = decoded === url.pathname ? decoded : new URL(BASE + decoded).pathname;
  return { path: resolved.replace(/\/{2,}/g, "/"), search: url.search, searchParams: url.searchParams };
}
