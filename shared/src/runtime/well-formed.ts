/** A lone UTF-16 surrogate: with the `u` flag, paired surrogates form one code point and do not match. */
const LONE_SURROGATE = /\p{Cs}/u;

/**
 * The path (`name`, `routes.2`) of the first string in `value` that is not well-formed
 * Unicode (a lone surrogate such as `"\ud800"`), or undefined. Such a string survives
 * JSON.stringify as an escape, but no store that expects UTF-8 (ClickHouse, a browser)
 * can take it: it is refused at the boundary instead of breaking a later copy.
 */
export function malformedStringPath(value: unknown, path = ""): string | undefined {
  if (typeof value === "string") return LONE_SURROGATE.test(value) ? path || "(value)" : undefined;
  if (typeof value !== "object" || value === null) return undefined;
  for (const [key, item] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    if (LONE_SURROGATE.test(key)) return at;
    const found = malformedStringPath(item, at);
    if (found) return found;
  }
  return undefined;
}
