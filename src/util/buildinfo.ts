// Version, git commit and build date, stamped by scripts/build.mjs (esbuild `define`).
// Running from sources (tests, tsx) has no stamp: those read "dev"/"unknown".
declare const __BANGER_VERSION__: string | undefined;
declare const __BANGER_COMMIT__: string | undefined;
declare const __BANGER_BUILD_DATE__: string | undefined;

export const buildInfo = {
  version: typeof __BANGER_VERSION__ === "string" ? __BANGER_VERSION__ : "dev",
  commit: typeof __BANGER_COMMIT__ === "string" ? __BANGER_COMMIT__ : "unknown",
  buildDate: typeof __BANGER_BUILD_DATE__ === "string" ? __BANGER_BUILD_DATE__ : "unknown",
} as const;

export function versionLine(program: string): string {
  return `${program} ${buildInfo.version} (commit ${buildInfo.commit}, built ${buildInfo.buildDate})`;
}
