// Reading an ext4 image the way a user would check it: debugfs, entry by entry.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function debugfs(image: string, request: string): string {
  return execFileSync("debugfs", ["-R", request, image], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export interface InodeInfo {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  links: number;
  mtime: number;
  /** Fast or slow symlink target, when a symlink. */
  linkTarget?: string;
  devMajor?: number;
  devMinor?: number;
  text: string;
}

export function statInode(image: string, path: string): InodeInfo {
  const text = debugfs(image, `stat "${path}"`);
  const num = (re: RegExp, base = 10) => {
    const m = re.exec(text);
    if (!m) throw new Error(`${path}: ${re} not in debugfs stat output:\n${text}`);
    return Number.parseInt(m[1]!, base);
  };
  const dev = /Device major\/minor number: (\d+):(\d+)/.exec(text);
  const info: InodeInfo = {
    type: /Type: (\S+)/.exec(text)?.[1] ?? "?",
    mode: num(/Mode:\s+(\d+)/, 8),
    uid: num(/User:\s+(\d+)/),
    gid: num(/Group:\s+(\d+)/),
    links: num(/Links: (\d+)/),
    mtime: num(/mtime: 0x([0-9a-f]+)/, 16),
    text,
  };
  const fast = /Fast link dest: "(.*)"/.exec(text);
  if (fast) info.linkTarget = fast[1];
  else if (info.type === "symlink") info.linkTarget = debugfs(image, `cat "${path}"`);
  if (dev) {
    info.devMajor = Number(dev[1]);
    info.devMinor = Number(dev[2]);
  }
  return info;
}

/** One extended attribute's raw bytes, or undefined when absent. */
export function readXattr(image: string, path: string, name: string): Buffer | undefined {
  const dir = mkdtempSync(join(tmpdir(), "bgr-xattr-"));
  try {
    const out = join(dir, "value");
    debugfs(image, `ea_get -f ${out} "${path}" ${name}`);
    return readFileSync(out);
  } catch {
    return undefined;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
