import { randomUUID } from "node:crypto";

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The caller's `X-Request-Id` when it is a plain token (letters, digits, `._:-`, up to 128), else undefined. */
export function plainRequestId(header: string | string[] | undefined): string | undefined {
  return typeof header === "string" && REQUEST_ID.test(header) ? header : undefined;
}

/** The caller's `X-Request-Id` when it is a plain token (see {@link plainRequestId}), else a new UUID. */
export function requestIdFrom(header: string | string[] | undefined): string {
  return plainRequestId(header) ?? randomUUID();
}
