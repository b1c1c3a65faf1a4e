// Package workspace owns copying a user's repository into a guest and getting the guest's
// changes back as a git patch.
//
// In: planWorkspace validates the directory and lists the copy before any VM exists (plan.ts:
// outside a repository only a directory the user names; never /, /proc, /sys, /dev; untracked
// secrets skipped unless --include, secrets.ts); startCopy streams it as tar and keeps the
// copied commit alive as refs/banger/copied/<vm>; copyIn puts the stream into the guest owned
// by the guest user.
//
// The git state rule: the guest's repository IS the host's checkout, work in progress
// included: same branch and HEAD, the user's own index (staged stays staged), the same dirty
// and untracked files, and the user's user.name/user.email in its config. The host records
// that state as the copied commit (tree: the work tree; parents: HEAD, then a commit of the
// index). Out: exportPatch fetches the guest's workspace and computes, with host git (the
// image needs none), a format-patch series based on the host's HEAD that holds only what the
// guest changed on top of that work in progress (series.ts: per path, the host's own
// uncommitted work never comes back; a file both changed comes back merged onto HEAD, or
// whole and named when the edits overlap); applyPatch puts that series on a new branch based
// on the same HEAD, in a temporary worktree, so it merges into the user's checkout without
// colliding with their uncommitted or untracked files. The user's working tree, index and
// current branch are never touched.
//
// It does not own the agent protocol (guest), which VM or user a workspace belongs to or
// where the copied commit ids are stored (daemon/store), or CLI output. The repository is
// untrusted too: no git that reads objects, an index or a work tree obeys its config, include
// files or hooks (git.ts says how), and a .git, commondir, core.worktree or index entry cannot
// point the copy at other host files. Everything coming back from a guest is untrusted: bounded, extracted without
// following symlinks, and git never reads the guest's config or hooks; --apply's base is the
// HEAD the host recorded, never a line of the patch.
export { checkRepoOwner } from "./git.ts";
export { copiedRef, releaseWorkspace } from "./pack.ts";
export { LARGE_COPY, packWorkspace, planWorkspace, startCopy, type PackOptions, type PackedWorkspace, type PlanOptions, type WorkspacePlan } from "./plan.ts";
export { copyIn, DEFAULT_GUEST_WORKSPACE, type CopyInOptions } from "./copyin.ts";
export { exportPatch, type ExportOptions, type ExportedPatch, type GuestFiles } from "./export.ts";
export { applyPatch, type ApplyOptions, type AppliedPatch } from "./apply.ts";
