import { isAppError } from "./errors";

/**
 * Runs a service's main function. A known error (bad config, port in use, a store that is
 * not there) ends the process with one line naming the problem; anything else is a bug and
 * keeps its stack. SIGINT/SIGTERM call the returned stop function once.
 */
export function runService(name: string, main: () => Promise<(() => Promise<void>) | undefined>): void {
  const fail = (error: unknown): never => {
    if (isAppError(error)) {
      process.stderr.write(`${name}: ${error.message}\n`);
    } else {
      process.stderr.write(`${name}: unexpected error: ${error instanceof Error ? error.stack : String(error)}\n`);
    }
    process.exit(1);
  };
  main()
    .then((stop) => {
      if (!stop) return;
      let stopping = false;
      const shutdown = () => {
        if (stopping) return;
        stopping = true;
        stop().then(() => process.exit(0), fail);
      };
      process.once("SIGINT", shutdown);
      process.once("SIGTERM", shutdown);
    })
    .catch(fail);
}
