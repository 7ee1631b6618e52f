import type { Server } from "node:http";
import { AppError } from "./errors";

/**
 * Runs `start` (which binds host:port); EADDRINUSE becomes a one-line error naming the port
 * and the variable that sets it. For servers that bind themselves, such as Fastify's `listen`.
 */
export async function bindPort<T>(
  host: string,
  port: number,
  portVariable: string,
  start: () => Promise<T>,
): Promise<T> {
  try {
    return await start();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EADDRINUSE") {
      throw new AppError(
        "port_in_use",
        `port ${port} on ${host} is already in use (set ${portVariable} to another port)`,
      );
    }
    throw error;
  }
}

/** Listens on host:port and resolves with the bound port (0 picks a free one). */
export function listen(server: Server, host: string, port: number, portVariable: string): Promise<number> {
  return bindPort(
    host,
    port,
    portVariable,
    () =>
      new Promise<number>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const address = server.address();
          resolve(typeof address === "object" && address ? address.port : port);
        });
      }),
  );
}
