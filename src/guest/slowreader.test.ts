// A reader that pauses mid-transfer must not stall getFiles: the credit it frees when it
// resumes has to reach the agent (this once deadlocked at ~280 KB).
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connectAgent, type AgentClient } from "./index.ts";
import { dialUnix } from "../vmm/index.ts";
import { startAgent } from "../../test/kits/agent-process.ts";
import { makeTempHome } from "../../test/helpers.ts";

describe("guest client flow control", () => {
  const { home, cleanup } = makeTempHome();
  let agentProc: ChildProcess;
  let agent: AgentClient;
  before(async () => {
    agentProc = await startAgent(join(home, "agent.sock"));
    agent = await connectAgent(await dialUnix(join(home, "agent.sock")));
  });
  after(() => {
    agent.close();
    agentProc.kill();
    cleanup();
  });

  it("finishes a getFiles whose reader keeps pausing", async () => {
    const dir = join(home, "files");
    mkdirSync(dir);
    const big = Buffer.alloc(3 * 1024 * 1024, 7);
    writeFileSync(join(dir, "big.bin"), big);
    const tar = await agent.getFiles(dir);
    let bytes = 0;
    const read = (async () => {
      // A consumer slower than the agent: it stops reading for a moment after every chunk.
      for await (const chunk of tar) {
        bytes += (chunk as Buffer).length;
        await new Promise((r) => setTimeout(r, 2));
      }
    })();
    await Promise.race([read, new Promise((_, reject) => setTimeout(() => reject(new Error(`getFiles stalled after ${bytes} bytes`)), 20_000))]);
    // The tar holds the file plus headers and padding.
    assert.ok(bytes > big.length && bytes < big.length + 64 * 1024, `read ${bytes} bytes`);
  });
});
