/**
 * Stripe's request encoding: `application/x-www-form-urlencoded` with bracket paths
 * (`payload[value]=3`, `items[0][price]=price_1`, `lookup_keys[0]=pro`), the same in GET
 * query strings. Decodes into nested objects; objects whose keys are all indices become arrays.
 */
export type FormValue = string | FormValue[] | { [key: string]: FormValue };
export type FormObject = { [key: string]: FormValue };

export function parseStripeForm(text: string): FormObject {
  const root: FormObject = {};
  for (const [rawKey, value] of new URLSearchParams(text)) {
    const path = splitPath(rawKey);
    let node: FormObject = root;
    path.forEach((segment, index) => {
      if (index === path.length - 1) {
        node[segment] = value;
        return;
      }
      const next = node[segment];
      if (next === undefined || typeof next === "string" || Array.isArray(next)) {
        const created: FormObject = {};
        node[segment] = created;
        node = created;
      } else {
        node = next;
      }
    });
  }
  return arraysFromIndices(root) as FormObject;
}

function splitPath(key: string): string[] {
  const first = key.indexOf("[");
  if (first < 0) return [key];
  const segments = [key.slice(0, first)];
  for (const match of key.slice(first).matchAll(/\[([^\]]*)\]/g)) segments.push(match[1] ?? "");
  return segments;
}

function arraysFromIndices(value: FormValue): FormValue {
  if (typeof value === "string" || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  const converted: FormObject = {};
  for (const key of keys) converted[key] = arraysFromIndices(value[key] as FormValue);
  if (keys.length > 0 && keys.every((key) => /^\d+$/.test(key))) {
    return keys.sort((a, b) => Number(a) - Number(b)).map((key) => converted[key] as FormValue);
  }
  return converted;
}

/** The string at `key`, or undefined when absent or not a string. */
export function str(form: FormObject | FormValue | undefined, key: string): string | undefined {
  if (form === undefined || typeof form === "string" || Array.isArray(form)) return undefined;
  const value = form[key];
  return typeof value === "string" ? value : undefined;
}

/** The object at `key`, or undefined. */
export function obj(form: FormObject | FormValue | undefined, key: string): FormObject | undefined {
  if (form === undefined || typeof form === "string" || Array.isArray(form)) return undefined;
  const value = form[key];
  return value !== undefined && typeof value !== "string" && !Array.isArray(value) ? value : undefined;
}

/** The array at `key` (a single string becomes a one-element array), or an empty array. */
export function arr(form: FormObject | undefined, key: string): FormValue[] {
  const value = form?.[key];
  if (value === undefined) return [];
  if (Array.isArray(value)) return value;
  return [value];
}
