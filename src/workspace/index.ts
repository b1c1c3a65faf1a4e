// Package workspace owns copying a user's repository into a guest and getting the guest's
// changes back as a git patch.
//
// In: packWorkspace streams the repository as tar (tracked + untracked-not-ignored files,
// submodules with their content, and .git), after recording the copied state as a commit
// kept alive by refs/banger/copied/<vm>; copyIn puts that stream into the guest owned by the guest
// user. Out: exportPatch fetches the guest's workspace and computes, with host git (the
// image needs none), a format-patch series of the guest's commits plus its uncommitted
// changes relative to the copied commit; applyPatch puts that series on a new branch in a
// temporary worktree. The user's working tree, index and current branch are never touched.
//
// It does not own the agent protocol (guest), which VM or user a workspace belongs to or
// where the copied commit ids are stored (daemon/store), or CLI output. The repository is
// untrusted too: no git that reads objects, an index or a work tree obeys its config, include
// files or hooks (git.ts says how), and a .git or core.worktree cannot point the copy at other
// host files. Everything coming back from a guest is untrusted: bounded, extracted without
// following symlinks, and git never reads the guest's config or hooks; --apply's base is the
// copied commit the host recorded, never a line of the patch.
export { checkRepoOwner } from "./git.ts";
export { copiedRef, releaseWorkspace } from "./pack.ts";
export { LARGE_COPY, packWorkspace, planWorkspace, startCopy, type PackOptions, type PackedWorkspace, type PlanOptions, type WorkspacePlan } from "./plan.ts";
export { copyIn, DEFAULT_GUEST_WORKSPACE, type CopyInOptions } from "./copyin.ts";
export { exportPatch, type ExportOptions, type ExportedPatch } from "./export.ts";
export { applyPatch, type ApplyOptions, type AppliedPatch } from "./apply.ts";
