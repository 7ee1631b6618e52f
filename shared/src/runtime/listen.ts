import type { Server } from "node:http";
import { AppError } from "./errors";

/**
 * Listens on host:port; EADDRINUSE becomes a one-line error naming the port and the
 * variable that sets it.
 */
export function listen(server: Server, host: string, port: number, portVariable: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") {
        reject(
          new AppError(
            "port_in_use",
            `port ${port} on ${host} is already in use (set ${portVariable} to another port)`,
          ),
        );
      } else {
        reject(error);
      }
    };
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      const address = server.address();
      resolve(typeof address === "object" && address ? address.port : port);
    });
  });
}
