import { createServer, request, type Server } from "node:http";
import { closeServer, listenOn } from "./key-stack";

/**
 * An HTTP proxy in front of ClickHouse that can make an INSERT ambiguous: the server
 * receives and applies it, answers 200, and the proxy keeps that answer from the client,
 * which sees a timeout. Everything else passes through.
 */
export class ClickHouseProxy {
  /** Every INSERT into usage_events forwarded to ClickHouse: its query id and answer status. */
  readonly inserts: Array<{ queryId: string; status: number }> = [];
  /** Query ids of the INSERTs whose answer was withheld. */
  readonly withheldQueryIds: string[] = [];
  private toWithhold = 0;

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(target: string): Promise<ClickHouseProxy> {
    const upstream = new URL(target);
    let proxy: ClickHouseProxy | undefined;
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        const url = new URL(req.url ?? "/", "http://proxy");
        const query = `${url.searchParams.get("query") ?? ""} ${body.subarray(0, 200).toString()}`;
        const isInsert = /INSERT INTO usage_events/i.test(query);
        const forward = request(
          {
            host: upstream.hostname,
            port: upstream.port,
            method: req.method,
            path: req.url,
            headers: { ...req.headers, host: upstream.host },
          },
          (answer) => {
            const answerChunks: Buffer[] = [];
            answer.on("data", (chunk: Buffer) => answerChunks.push(chunk));
            answer.on("end", () => {
              if (isInsert && proxy) {
                const queryId = url.searchParams.get("query_id") ?? "";
                proxy.inserts.push({ queryId, status: answer.statusCode ?? 0 });
                if (answer.statusCode === 200 && proxy.toWithhold > 0) {
                  proxy.toWithhold--;
                  proxy.withheldQueryIds.push(queryId);
                  return; // applied on the server; the client waits until its request timeout
                }
              }
              res.writeHead(answer.statusCode ?? 502, answer.headers);
              res.end(Buffer.concat(answerChunks));
            });
          },
        );
        forward.on("error", () => res.destroy());
        forward.end(body);
      });
    });
    const port = await listenOn(server);
    proxy = new ClickHouseProxy(server, `http://127.0.0.1:${port}`);
    return proxy;
  }

  /** Withholds the answers of the next `n` successful INSERTs into usage_events. */
  withholdNextInserts(n: number): void {
    this.toWithhold += n;
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }
}
