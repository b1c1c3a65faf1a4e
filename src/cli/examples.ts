// The Examples section of every main command's --help, in one place so they read alike.
// main.ts adds them after all commands are registered (a command that adds its own Examples
// keeps those); cli.test.ts checks each main command has exactly one.
import type { Command } from "commander";
import type { EventEmitter } from "node:events";

export const EXAMPLES: Record<string, string[]> = {
  "vm run": [
    "banger vm run                          # a shell in a fresh VM with this repository in /workspace",
    "banger vm run -- make test             # run one command; the VM is kept if the workspace changed",
    "banger vm run --image debian --memory 2G --cpus 2 -- ./build.sh",
    "banger vm run -d -- npm run dev        # a detached session: banger session attach VM SESSION",
    "banger vm run -p 8080 -- python3 -m http.server 8080",
  ],
  "vm create": [
    "banger vm create --name dev --image busybox",
    "banger vm create --name big --image debian --cpus 4 --memory 4G --disk-size 20G",
    "banger vm create --name later --no-start   # then: banger vm start later",
    "banger vm create --from-snapshot warm --name try1   # restore: the snapshot's processes keep running",
  ],
  "vm snapshot": ["banger vm snapshot dev --name warm      # dev keeps running; prints how long it was paused", "banger vm snapshot dev --name warm --json | jq .pauseMs"],
  "vm fork": ["banger vm fork dev                      # one child, dev-1", "banger vm fork dev --count 3", "banger vm fork dev --name fix-a --name fix-b"],
  "vm pause": ["banger vm pause dev    # then: banger vm resume dev"],
  "snapshot ls": ["banger snapshot ls", "banger snapshot ls --all --json   # fork bases too"],
  "snapshot show": ["banger snapshot show warm"],
  "snapshot rm": ["banger snapshot rm warm", "banger snapshot rm -f warm   # VMs restored from it keep its disk until they go"],
  "vm exec": [
    "banger vm exec dev -- uname -a",
    "banger vm exec -t dev -- top            # under a terminal",
    "echo hi | banger vm exec dev -- tee /tmp/hi",
    "banger vm exec dev -w /workspace -e CI=1 -- make test",
    "banger vm exec dev --user root -w /tmp -- apk add git   # as root, elsewhere",
  ],
  "vm shell": ["banger vm shell dev            # as and where vm run lands", "banger vm shell dev --user root -w /"],
  "vm ls": ["banger vm ls", "banger vm ls --json | jq -r '.[].name'"],
  "vm rm": ["banger vm rm dev", "banger vm rm -f dev other   # stop running ones first"],
  "vm stats": ["banger vm stats dev", "banger vm stats dev --json | jq .guest.memory"],
  "vm logs": ["banger vm logs dev", "banger vm logs -f dev", "banger vm logs --bytes 1M dev"],
  "image pull": [
    "banger image ls --available             # what the catalog offers",
    "banger image pull debian",
    "banger image pull alpine:3.20 --name alpine --kernel debian-6.1-cloud",
    "banger image pull ghcr.io/owner/repo:tag --size 4G",
  ],
  "image build": ["banger image build --preset busybox", "banger image build --preset debian-dev --name dev --size 8G"],
  "image ls": ["banger image ls", "banger image ls --available", "banger image ls --json"],
  "image rm": ["banger image rm alpine"],
  "kernel pull": ["banger kernel ls --available             # what the catalog offers", "banger kernel pull debian-6.1-cloud"],
  "kernel import": [
    "banger kernel import --debian                 # Debian's cloud kernel, fetched with apt",
    "banger kernel import --debian --deb ./linux-image-6.1.0-28-cloud-amd64.deb",
    "banger kernel import ./my-kernel --name mine    # a directory with vmlinux, initrd.img, modules/",
  ],
  "kernel ls": ["banger kernel ls", "banger kernel ls --available"],
  "kernel rm": ["banger kernel rm mine"],
  "session start": [
    "banger session start dev -- npm run dev     # prints the session's name",
    "banger session start --name build --no-tty dev -- make",
    "banger session start dev --user root -w / -- top",
  ],
  "session attach": ["banger session attach dev build"],
  "session ls": ["banger session ls", "banger session ls dev"],
  "session logs": ["banger session logs dev build", "banger session logs -f dev build"],
  "pool set": [
    "banger pool set busybox --size 2              # two VMs booted ahead; vm run --image busybox takes one",
    "banger pool set debian --size 1 --memory 1G   # vm create --image debian --memory 1G takes it",
    "banger pool set busybox --size 0              # empty the pool",
  ],
  "pool ls": ["banger pool ls", "banger pool ls --json | jq '.pools[] | {image, ready}'"],
  config: ["banger config get", "banger config get default_image", "banger config set default_image debian", "banger config unset web.port"],
  doctor: ["banger doctor", "banger doctor --json"],
  api: [
    "banger config set api.enabled true   # serve the E2B-compatible API on 127.0.0.1:3049",
    'eval "$(banger api env)"             # E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY for the e2b SDK',
    "banger api key --rotate              # the old key stops working at once",
  ],
  web: ["banger web                 # opens the dashboard in a browser", "banger web --no-open      # only print the link"],
  mcp: [
    "claude mcp add banger -- banger mcp      # Claude Code: the assistant starts it on stdio",
    "npx @modelcontextprotocol/inspector banger mcp   # try the tools by hand",
    "BANGER_HOME=~/sandboxes banger mcp        # VMs under another state root",
  ],
};

/** The text of one command's Examples section. */
export function examplesText(lines: readonly string[]): string {
  return `\nExamples:\n${lines.map((l) => `  ${l}`).join("\n")}\n`;
}

/** The text a command's own addHelpText("after", ...) adds (what commander's listeners would write). */
function ownAfterHelp(cmd: Command): string {
  let text = "";
  // Commander's Command is an EventEmitter, though its types do not say so.
  for (const listener of (cmd as unknown as EventEmitter).listeners("afterHelp")) (listener as (context: unknown) => void)({ error: false, command: cmd, write: (s: string) => void (text += s) });
  return text;
}

/**
 * Adds each command's Examples, found by its path under the program by name or alias ("image
 * ls" is `image list`). A command whose own file already adds an Examples section keeps that
 * one alone, so a section written beside its command never shows twice.
 */
export function addExamples(program: Command): void {
  const visit = (cmd: Command, parents: string[]) => {
    const key = [cmd.name(), ...cmd.aliases()].map((n) => [...parents, n].join(" ")).find((k) => EXAMPLES[k]);
    if (key && !/^Examples:$/m.test(ownAfterHelp(cmd))) cmd.addHelpText("after", examplesText(EXAMPLES[key]!));
    for (const sub of cmd.commands) visit(sub, [...parents, cmd.name()]);
  };
  for (const sub of program.commands) visit(sub, []);
}
