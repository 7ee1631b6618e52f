import { type Job, type Processor, UnrecoverableError, Worker, type WorkerOptions } from "bullmq";
import type { z } from "zod";
import { describeIssues } from "../runtime/describe-issues";
import { isAppError } from "../runtime/errors";
import type { Logger } from "../runtime/logger";
import type { QueueConnection } from "./queues";

export interface JobWorkerOptions {
  queue: string;
  connection: QueueConnection;
  logger: Logger;
  concurrency?: number;
  /** Anything else BullMQ accepts (lock duration, stalled-job checks). */
  worker?: Omit<WorkerOptions, "connection" | "prefix" | "concurrency" | "autorun">;
}

/**
 * A BullMQ worker whose handler receives job data already parsed with `schema`. Data that
 * does not parse fails the job with UnrecoverableError (no retry can fix it); an AppError that
 * is not retryable does too. Everything else fails the attempt and BullMQ retries it per
 * the job's attempts and back-off. Stalled jobs (a worker killed mid-job) are moved back to
 * waiting by BullMQ's stalled-job check (every 30 s by default, lock 30 s).
 */
export function createJobWorker<S extends z.ZodType, R>(
  schema: S,
  handler: (data: z.output<S>, job: Job) => Promise<R>,
  options: JobWorkerOptions,
): Worker {
  const processor: Processor = async (job) => {
    const parsed = schema.safeParse(job.data);
    if (!parsed.success) {
      options.logger.error(
        { queue: options.queue, job_id: job.id, problem: describeIssues(parsed.error) },
        "job with invalid data dropped",
      );
      throw new UnrecoverableError(`invalid job data: ${describeIssues(parsed.error)}`);
    }
    try {
      return await handler(parsed.data, job);
    } catch (error) {
      if (isAppError(error) && !error.retryable) throw new UnrecoverableError(error.message);
      throw error;
    }
  };
  const worker = new Worker(options.queue, processor, {
    ...options.worker,
    connection: options.connection.connection,
    prefix: options.connection.prefix,
    concurrency: options.concurrency ?? 1,
    autorun: true,
  });
  worker.on("failed", (job, error) => {
    options.logger.warn(
      { queue: options.queue, job_id: job?.id, attempt: job?.attemptsMade, err: error.message },
      "job attempt failed",
    );
  });
  // Connection errors are retried by ioredis; log them instead of crashing on an unhandled 'error'.
  worker.on("error", (error) => options.logger.warn({ queue: options.queue, err: error.message }, "worker error"));
  return worker;
}
