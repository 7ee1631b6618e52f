import type { z } from "zod";

/** `field.path: message` for each issue, joined with "; ". */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((issue) => `${issue.path.length ? issue.path.join(".") : "(event)"}: ${issue.message}`)
    .join("; ");
}
