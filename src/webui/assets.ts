// The page's built files (index.html, app.js, app.css), made by scripts/build.mjs into
// dist/webui/ and read into memory once: they are small and never change while running.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";

export interface Asset {
  type: string;
  body: Buffer;
}

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json; charset=utf-8",
};

/** dist/webui seen from the daemon bundle (dist/bangerd.js or dist/chunks/*.js) or from the sources. */
export function assetsDir(): string | undefined {
  const here = fileURLToPath(import.meta.url);
  const candidates = [join(here, "..", "webui"), join(here, "..", "..", "webui"), join(here, "..", "..", "..", "dist", "webui")];
  return candidates.find((dir) => existsSync(join(dir, "index.html")));
}

/** URL path (`/app.js`) → file; empty when the page was not built. Source maps are left out. */
export function loadAssets(dir = assetsDir()): Map<string, Asset> {
  const assets = new Map<string, Asset>();
  if (!dir) return assets;
  for (const name of readdirSync(dir)) {
    const type = TYPES[extname(name)];
    if (type) assets.set(`/${name}`, { type, body: readFileSync(join(dir, name)) });
  }
  return assets;
}
