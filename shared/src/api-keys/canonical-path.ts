/**
 * The canonical form of a URL path: what the gateway checks scopes against and forwards, and
 * what route prefixes are stored as, so a prefix and a request are compared in one form and
 * an upstream cannot read a path differently from how it was authorized.
 *
 * The input is a path as the WHATWG URL parser leaves it (dot segments, also `%2e%2e`,
 * resolved; spaces percent-encoded). On top of that: percent-encoded unreserved characters
 * are decoded (`/%61dmin` is `/admin`), dot segments the decoding produced are resolved once
 * more, runs of slashes collapse. Refused, since upstreams disagree about them: encoded
 * slashes, backslashes and NUL, any other control character, double encoding (`%25`, so
 * `/%2561dmin` cannot become `/admin` behind a second decoder), matrix parameters (`;`,
 * which Tomcat and Spring strip: `/admin;x` and `/v1/..;/admin`), and segments ending in a
 * dot or a space (`/admin.`, `/admin%20`, which Windows and some frameworks trim).
 */
export type CanonicalPath = { ok: true; path: string } | { ok: false; reason: string };

const BASE = "http://canonical.invalid";
const UNRESERVED_ESCAPE = /%([0-9a-f]{2})/gi;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const REFUSED: ReadonlyArray<[RegExp, string]> = [
  [/%(2f|5c|00)/i, "encoded slash, backslash or NUL"],
  [/%25/, "double percent-encoding (%25)"],
  [/%([01][0-9a-f]|7f)/i, "encoded control character"],
  [/;/, "matrix parameters (;)"],
];
/** A segment ending in `.` or a space (also encoded), which some servers trim away. */
const TRIMMABLE_END = /(\.|%20)(\/|$)/i;

/** Canonicalizes a WHATWG-parsed URL path (see the module comment), or says why it is refused. */
export function canonicalPath(pathname: string): CanonicalPath {
  for (const [pattern, reason] of REFUSED) {
    if (pattern.test(pathname)) return { ok: false, reason };
  }
  const decoded = pathname.includes("%")
    ? pathname.replace(UNRESERVED_ESCAPE, (encoded, hex: string) => {
        const char = String.fromCharCode(Number.parseInt(hex, 16));
        return UNRESERVED.test(char) ? char : encoded.toUpperCase();
      })
    : pathname;
  // Decoding may have produced new dot segments (`%2e`): resolve once more.
  const resolved = decoded === pathname ? decoded : new URL(BASE + decoded).pathname;
  const path = resolved.includes("//") ? resolved.replace(/\/{2,}/g, "/") : resolved;
  if (TRIMMABLE_END.test(path)) return { ok: false, reason: "a path segment ending in a dot or a space" };
  return { ok: true, path };
}

/** Canonicalizes a path given as text (a route prefix, a config value): parsed as a URL path first. */
export function canonicalPathOf(text: string): CanonicalPath {
  if (!text.startsWith("/") || !URL.canParse(BASE + text)) return { ok: false, reason: "not an absolute path" };
  const url = new URL(BASE + text);
  if (url.search !== "" || url.hash !== "") return { ok: false, reason: "a path must not have a query or fragment" };
  return canonicalPath(url.pathname);
}
