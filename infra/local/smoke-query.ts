import { quoteString } from "@keymeter/shared/stores";

/** The pipeline smoke test's read-back: requests per route of one key, from the daily rollup. */
export function smokeRoutesQuery(keyId: string): string {
  return `SELECT route, sum(requests) AS requests FROM usage_daily WHERE key_id = ${quoteString(keyId)} GROUP BY route ORDER BY route`;
}
