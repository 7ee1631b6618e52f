/**
 * The aggregator as main.ts runs it, plus a crash at a chosen moment of a chosen batch: the
 * process SIGKILLs itself, so nothing after that moment runs (no dedup marking, no Kafka
 * commit, no leaving the group). Started by spawnCrashingAggregator (aggregator-process.ts).
 *
 *   KEYMETER_CRASH_AT=before-insert  the batch's invalid events are in the DLQ, nothing inserted
 *   KEYMETER_CRASH_AT=after-insert   the INSERT returned; ids not marked, offset not committed
 *   KEYMETER_CRASH_AT=after-mark     ids marked in the dedup window; offset not committed
 *   KEYMETER_CRASH_ON_BATCH=N        the N-th batch with rows to insert (default 1)
 *
 * Before dying it writes one line `KEYMETER_CRASH {"at", "partition", "members"}` to stderr:
 * the batch's partition and the `source\nid` of its events.
 */
import {
  Aggregator,
  aggregatorConfigSchema,
  aggregatorOptions,
  ClickHouseUsageStore,
  connectAggregatorStores,
  DedupWindow,
  readUsageRows,
  type UsageStore,
} from "@keymeter/aggregator";
import { createLogger, createMetricsServer, listen, parseConfig, runService } from "@keymeter/shared/runtime";

const MOMENTS = ["before-insert", "after-insert", "after-mark"] as const;
type Moment = (typeof MOMENTS)[number];

runService("crashing-aggregator", async () => {
  const config = parseConfig(aggregatorConfigSchema);
  const at = process.env.KEYMETER_CRASH_AT as Moment;
  if (!MOMENTS.includes(at)) throw new Error(`KEYMETER_CRASH_AT must be one of ${MOMENTS.join(", ")}`);
  const crashOn = Number(process.env.KEYMETER_CRASH_ON_BATCH ?? 1);
  const logger = createLogger("aggregator", config.LOG_LEVEL);
  const stores = await connectAggregatorStores(config, logger);

  const crash = (partition: number, members: string[]): never => {
    process.stderr.write(`KEYMETER_CRASH ${JSON.stringify({ at, partition, members })}\n`);
    process.kill(process.pid, "SIGKILL");
    throw new Error("unreachable: SIGKILL did not end the process");
  };
  const real = new ClickHouseUsageStore(stores.clickhouse);
  let batches = 0;
  const store: UsageStore = {
    async insert(rows, queryId) {
      if (rows.count === 0) return;
      const batch = ++batches;
      // The query id ends with -<partition>-<first offset>-<last offset>.
      const partition = Number(/-(\d+)-\d+-\d+$/.exec(queryId)?.[1] ?? -1);
      const members = () =>
        readUsageRows(rows.bytes()).map((row) => DedupWindow.member(String(row.source), String(row.event_id)));
      if (batch === crashOn && at === "before-insert") crash(partition, members());
      await real.insert(rows, queryId);
      if (batch === crashOn && at === "after-insert") crash(partition, members());
    },
  };

  const aggregator = new Aggregator({
    ...aggregatorOptions(config, stores, logger),
    store,
    // Runs after the dedup marking and before the Kafka commit.
    afterInsert: (batch) => {
      if (at === "after-mark" && batches >= crashOn) {
        crash(
          batch.partition,
          batch.events.map((event) => DedupWindow.member(event.source, event.id)),
        );
      }
    },
    onFatal: () => process.exit(1),
  });
  const metricsServer = createMetricsServer(aggregator.metrics.registry);
  await listen(metricsServer, config.METRICS_HOST, config.METRICS_PORT, "METRICS_PORT");
  await aggregator.start();
  return async () => {
    await aggregator.stop();
    metricsServer.close();
  };
});
