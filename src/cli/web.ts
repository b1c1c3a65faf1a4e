// `banger web`: where the dashboard is, with a one-time login link; opens a browser when
// this session has one (xdg-open), and never fails when it does not.
import { spawn } from "node:child_process";
import type { Command } from "commander";
import { which } from "../util/exec.ts";
import { callDaemon } from "./daemon-client.ts";
import { printJson } from "./output.ts";

export function registerWeb(program: Command): void {
  program
    .command("web")
    .description("print the dashboard's URL with a one-time login link, and open a browser when there is one")
    .option("--no-open", "only print the link")
    .option("--token", "also print the API token for scripts (Authorization: Bearer TOKEN)")
    .option("--json", "print JSON (url, loginUrl, token)")
    .action(async (opts: { open: boolean; token?: boolean; json?: boolean }) => {
      const info = await callDaemon("web.info");
      if (opts.json) return printJson(info);
      process.stdout.write(`dashboard: ${info.url}\nlogin (once, within 5 minutes): ${info.loginUrl}\n`);
      if (opts.token) process.stdout.write(`api token: ${info.token}\n`);
      if (opts.open && openBrowser(info.loginUrl)) process.stdout.write("opened in your browser\n");
    });
}

/** Starts xdg-open detached when there is a display to open on; false when there is none. */
function openBrowser(url: string): boolean {
  const opener = which("xdg-open");
  if (!opener || (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY)) return false;
  try {
    const child = spawn(opener, [url], { detached: true, stdio: "ignore" });
    child.on("error", () => undefined);
    child.unref();
    return true;
  } catch {
    return false;
  }
}
