import { Writable } from "node:stream";
import { runCli } from "@keymeter/admin-api";
import { afterEach, describe, expect, it } from "vitest";
import { KeyStack, TEST_TIERS } from "../support/key-stack";

class Capture extends Writable {
  text = "";
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.text += chunk.toString();
    callback();
  }
}

const stacks: KeyStack[] = [];
afterEach(async () => {
  for (const s of stacks.splice(0)) await s.close();
});

/** Runs `keymeter ...args` in-process against a test stack's registry. */
async function keymeter(stack: KeyStack, ...args: string[]) {
  const out = new Capture();
  const err = new Capture();
  let closed = 0;
  const code = await runCli(
    ["node", "keymeter", ...args],
    () => ({ registry: stack.registry, tiers: TEST_TIERS, close: async () => void closed++ }),
    { out, err },
  );
  return { code, out: out.text, err: err.text, json: () => JSON.parse(out.text) as unknown, closed };
}

describe("keymeter CLI (real Redis)", () => {
  it("creates the first admin key and manages keys", async () => {
    const stack = new KeyStack();
    stacks.push(stack);
    const created = await keymeter(
      stack,
      "keys",
      "create",
      "--customer",
      "ops",
      "--tier",
      "pro",
      "--scope",
      "admin",
      "--route",
      "/admin",
      "--ip",
      "127.0.0.1",
    );
    expect(created.code).toBe(0);
    expect(created.closed).toBe(1);
    const issued = created.json() as {
      key: { id: string; scope: string; routes: string[]; ip_allowlist: string[] };
      secret: string;
    };
    expect(issued.key).toMatchObject({ scope: "admin", routes: ["/admin"], ip_allowlist: ["127.0.0.1/32"] });
    expect(issued.secret).toMatch(/^km_live_/);

    const id = issued.key.id;
    expect(
      ((await keymeter(stack, "keys", "list", "--customer", "ops")).json() as Array<{ id: string }>).map((k) => k.id),
    ).toEqual([id]);
    const shown = await keymeter(stack, "keys", "show", id);
    expect(shown.json()).toMatchObject({ id, state: "active" });
    expect(shown.out).not.toContain(issued.secret);
    expect((await keymeter(stack, "keys", "update", id, "--tier", "free", "--no-ips")).json()).toMatchObject({
      tier: "free",
      ip_allowlist: [],
    });
    const rotated = (await keymeter(stack, "keys", "rotate", id, "--grace-seconds", "30")).json() as { secret: string };
    expect(rotated.secret).not.toBe(issued.secret);
    expect((await keymeter(stack, "keys", "revoke", id)).json()).toMatchObject({ state: "revoked" });
    const tiers = (await keymeter(stack, "tiers", "list")).json() as Array<{ name: string }>;
    expect(tiers.map((t) => t.name)).toContain("free");
  });

  it("says what is wrong in one line and exits non-zero", async () => {
    const stack = new KeyStack();
    stacks.push(stack);
    const unknownTier = await keymeter(stack, "keys", "create", "--customer", "c", "--tier", "gold");
    expect(unknownTier.code).toBe(1);
    expect(unknownTier.err).toBe('keymeter: tier: unknown tier "gold" (known: free, pro, slow, fast, leased)\n');
    const badScope = await keymeter(stack, "keys", "create", "--customer", "c", "--tier", "free", "--scope", "root");
    expect(badScope.code).not.toBe(0);
    expect(badScope.err).toContain("Allowed choices are read-only, read-write, admin");
    const missing = await keymeter(stack, "keys", "show", "key_nothinghere");
    expect(missing).toMatchObject({ code: 1, err: "keymeter: no API key key_nothinghere\n" });
    const badGrace = await keymeter(stack, "keys", "rotate", "key_nothinghere", "--grace-seconds", "soon");
    expect(badGrace.err).toBe("keymeter: --grace-seconds must be a whole number >= 0\n");
    const help = await keymeter(stack, "keys", "--help");
    expect(help.out).toContain("rotate");
  });

  it("sets, replaces and removes key aliases", async () => {
    const stack = new KeyStack();
    stacks.push(stack);
    const created = await keymeter(stack, "keys", "create", "--customer", "c", "--tier", "free", "--alias", "kong-1");
    expect(created.code).toBe(0);
    const id = (created.json() as { key: { id: string; aliases: string[] } }).key.id;
    expect(created.json()).toMatchObject({ key: { aliases: ["kong-1"] } });
    const replaced = await keymeter(stack, "keys", "update", id, "--alias", "kong-2", "--alias", "kong-3");
    expect(replaced.json()).toMatchObject({ aliases: ["kong-2", "kong-3"] });
    const removed = await keymeter(stack, "keys", "update", id, "--no-aliases");
    expect(removed.json()).toMatchObject({ aliases: [] });
    expect(await stack.redis.get(stack.keys.keyAlias("kong-2"))).toBeNull();
  });
});
