// The network and SSH methods of the method table (methods.ts spreads them in): the VM
// network's status and DNS setup, a guest's listening ports, TCP into a guest (`vm.tcp`,
// `vm.ssh`) and registering an SSH key for every VM (`ssh.authorize`).
import type { Handlers } from "../api/index.ts";
import { optionalInt, requireString } from "../rpc/index.ts";
import { errorLine, invalidArgument } from "../util/errors.ts";
import type { DaemonContext } from "./context.ts";
import { authorizeKey, installSshKeys } from "./ssh-keys.ts";
import { hasSshServer, openSsh } from "./ssh-server.ts";
import { bridgeConnection } from "./tcp-bridge.ts";
import { runningAgent } from "./vms.ts";

export function networkMethods(ctx: DaemonContext): Handlers<"net.status" | "net.dns.setup" | "vm.ports" | "vm.tcp" | "vm.ssh" | "ssh.authorize"> {
  return {
    "net.status": () => ctx.network.status(),
    "net.dns.setup": () => ctx.network.setupDns(),
    "vm.ports": async (p, call) => (await runningAgent(ctx, requireString(p, "name"), call.signal)).ports(),
    "vm.tcp": async (p, call) => {
      const port = optionalInt(p, "port", 1, 65535);
      if (port === undefined) throw invalidArgument("a guest port is required");
      const agent = await runningAgent(ctx, requireString(p, "name"), call.signal);
      return bridgeConnection(await agent.openTcp(port), call);
    },
    "vm.ssh": async (p, call) => {
      const name = requireString(p, "name");
      const agent = await runningAgent(ctx, name, call.signal);
      return bridgeConnection(await openSsh(agent, ctx.store.getVm(name)!), call);
    },
    "ssh.authorize": async (p) => {
      const keys = authorizeKey(ctx.store, requireString(p, "publicKey"));
      const installed: string[] = [];
      const noServer: { vm: string; image: string }[] = [];
      const failedVms: { vm: string; error: string }[] = [];
      // In parallel, each bounded in time: one stuck guest does not hold up the others.
      await Promise.all(
        ctx.store
          .listVms()
          .filter((v) => v.state === "running")
          .map(async (vm) => {
            try {
              const agent = await runningAgent(ctx, vm.name);
              await installSshKeys(agent, keys);
              if (await hasSshServer(agent)) installed.push(vm.name);
              else noServer.push({ vm: vm.name, image: vm.image });
            } catch (err) {
              failedVms.push({ vm: vm.name, error: errorLine(err) });
            }
          }),
      );
      const byVm = (a: { vm: string }, b: { vm: string }) => a.vm.localeCompare(b.vm);
      return { keys: keys.length, installed: installed.sort(), noServer: noServer.sort(byVm), failed: failedVms.sort(byVm) };
    },
  };
}
