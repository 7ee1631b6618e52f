import { AppError, describeIssues, type Logger, malformedStringPath } from "@keymeter/shared/runtime";
import type { FastifyRequest } from "fastify";
import type { z } from "zod";

/**
 * Parses a body, query or path with zod; failures are 400s naming the field (`invalid body:
 * tier: ...`), and strings that are not well-formed Unicode are refused first.
 */
export function parse<S extends z.ZodType>(where: "body" | "query" | "path", schema: S, input: unknown): z.output<S> {
  const malformed = malformedStringPath(input);
  if (malformed) throw new AppError("bad_request", `invalid ${where}: ${malformed}: not well-formed Unicode`);
  const result = schema.safeParse(input);
  if (!result.success) throw new AppError("bad_request", `invalid ${where}: ${describeIssues(result.error)}`);
  return result.data;
}

/** One log line per admin change: who did what to which key or customer. */
export function audit(
  logger: Logger,
  request: FastifyRequest,
  action: string,
  target: { key_id?: string; customer_id?: string } = {},
) {
  logger.info({ request_id: request.id, actor: request.actor, action, ...target }, "admin action");
}
