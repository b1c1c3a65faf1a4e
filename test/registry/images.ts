// The test image: busybox-static plus the awkward cases (whiteouts, opaque dirs, hardlinks
// inside and across layers, setuid root, uid 1000, a symlink chain, a fifo, device nodes,
// a file capability), in three layers: gzip, zstd and uncompressed. Pushed as an OCI or
// Docker schema2 manifest, or as a two-platform index / manifest list.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { type PushTarget, type Pushed, pushBlob, pushManifest, sha256 } from "./push.ts";
import { CAP_ALL_EP, type TarEntry, makeTar } from "./tarball.ts";

export type Arch = "amd64" | "arm64";
export type Format = "oci" | "docker";

const BUSYBOX = readFileSync("/bin/busybox");

const BASE: TarEntry[] = [
  { name: "bin/", type: "directory" },
  { name: "bin/busybox", content: BUSYBOX, mode: 0o755 },
  { name: "bin/sh", type: "symlink", linkname: "busybox" },
  { name: "bin/ls", type: "link", linkname: "bin/busybox" },
  { name: "bin/su", content: "setuid", mode: 0o4755 },
  { name: "usr/bin/ping", content: "ping", mode: 0o755, xattrs: { "security.capability": CAP_ALL_EP } },
  { name: "link1", type: "symlink", linkname: "link2" },
  { name: "link2", type: "symlink", linkname: "/bin/sh" },
  { name: "home/", type: "directory" },
  { name: "home/user/", type: "directory", uid: 1000, gid: 1000, mode: 0o750 },
  { name: "home/user/notes", content: "mine", uid: 1000, gid: 1000, mode: 0o640 },
  { name: "tmp/", type: "directory", mode: 0o1777 },
  { name: "dev/", type: "directory" },
  { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666 },
  { name: "dev/sda", type: "block-device", devmajor: 8, devminor: 0, mode: 0o660, gid: 6 },
  { name: "run/", type: "directory" },
  { name: "run/ctl", type: "fifo", mode: 0o600 },
  { name: "gone.txt", content: "bye" },
  { name: "gonedir/", type: "directory" },
  { name: "gonedir/x", content: "x" },
  { name: "opq/", type: "directory" },
  { name: "opq/old", content: "old" },
  { name: "etc/", type: "directory" },
  { name: "etc/passwd", content: "root:x:0:0::/root:/bin/sh\n" },
];

const MIDDLE: TarEntry[] = [
  { name: ".wh.gone.txt" },
  { name: ".wh.gonedir" },
  { name: "opq/", type: "directory", mode: 0o700 },
  { name: "opq/.wh..wh..opq" },
  { name: "opq/new", content: "new" },
  { name: "usr/bin/ls2", type: "link", linkname: "bin/busybox" },
  { name: "etc/passwd", content: "root:x:0:0::/root:/bin/ash\nuser:x:1000:1000::/home/user:/bin/sh\n", mode: 0o600 },
];

const top = (arch: Arch): TarEntry[] => [{ name: "etc/arch", content: `${arch}\n` }];

/** Each layer as pushed: bytes, media type, diff_id. */
interface Layer {
  bytes: Buffer;
  mediaType: string;
  diffId: string;
}

function zstd(bytes: Buffer): Buffer {
  const res = spawnSync("zstd", ["-q", "-c"], { input: bytes, maxBuffer: 64 * 1024 * 1024 });
  if (res.status !== 0) throw new Error(`zstd failed: ${res.stderr}`);
  return res.stdout;
}

export async function buildLayers(arch: Arch, format: Format): Promise<Layer[]> {
  const [base, middle, last] = await Promise.all([makeTar(BASE), makeTar(MIDDLE), makeTar(top(arch))]);
  const oci = format === "oci";
  return [
    { bytes: gzipSync(base), mediaType: oci ? "application/vnd.oci.image.layer.v1.tar+gzip" : "application/vnd.docker.image.rootfs.diff.tar.gzip", diffId: sha256(base) },
    { bytes: zstd(middle), mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", diffId: sha256(middle) },
    { bytes: last, mediaType: oci ? "application/vnd.oci.image.layer.v1.tar" : "application/vnd.docker.image.rootfs.diff.tar", diffId: sha256(last) },
  ];
}

export const IMAGE_CONFIG = {
  Entrypoint: ["/bin/sh", "-c"],
  Cmd: ["echo hello"],
  Env: ["PATH=/usr/bin:/bin", "GREETING=hi"],
  WorkingDir: "/home/user",
  User: "1000:1000",
  ExposedPorts: { "8080/tcp": {}, "53/udp": {} },
};

export interface PushedImage extends Pushed {
  layers: Pushed[];
  mediaType: string;
}

/** Pushes one platform's image; `tag` may be omitted when it only goes into an index. */
export async function pushTestImage(target: PushTarget, repo: string, tag: string | undefined, arch: Arch, format: Format, layers?: Layer[]): Promise<PushedImage> {
  const ls = layers ?? (await buildLayers(arch, format));
  const oci = format === "oci";
  const config = Buffer.from(
    JSON.stringify({
      architecture: arch,
      os: "linux",
      ...(arch === "arm64" ? { variant: "v8" } : {}),
      config: IMAGE_CONFIG,
      rootfs: { type: "layers", diff_ids: ls.map((l) => l.diffId) },
    }),
  );
  const configDesc = await pushBlob(target, repo, config);
  const layerDescs: Pushed[] = [];
  for (const l of ls) layerDescs.push(await pushBlob(target, repo, l.bytes));
  const mediaType = oci ? "application/vnd.oci.image.manifest.v1+json" : "application/vnd.docker.distribution.manifest.v2+json";
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      config: { mediaType: oci ? "application/vnd.oci.image.config.v1+json" : "application/vnd.docker.container.image.v1+json", ...configDesc },
      layers: ls.map((l, i) => ({ mediaType: l.mediaType, ...layerDescs[i]! })),
    }),
  );
  const pushed = await pushManifest(target, repo, tag ?? sha256(manifest), manifest, mediaType);
  return { ...pushed, layers: layerDescs, mediaType };
}

/** Pushes amd64 and arm64 images and an index (OCI) or manifest list (Docker) over them. */
export async function pushTestIndex(target: PushTarget, repo: string, tag: string, format: Format): Promise<{ index: Pushed; amd64: PushedImage; arm64: PushedImage }> {
  const amd64 = await pushTestImage(target, repo, undefined, "amd64", format);
  const arm64 = await pushTestImage(target, repo, undefined, "arm64", format);
  const mediaType = format === "oci" ? "application/vnd.oci.image.index.v1+json" : "application/vnd.docker.distribution.manifest.list.v2+json";
  const entry = (m: PushedImage, platform: object) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform });
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType,
      manifests: [entry(amd64, { os: "linux", architecture: "amd64" }), entry(arm64, { os: "linux", architecture: "arm64", variant: "v8" })],
    }),
  );
  return { index: await pushManifest(target, repo, tag, index, mediaType), amd64, arm64 };
}

/** The flattened tree of the test image, entry by entry. */
export function expectedTree(): Record<string, string> {
  return {
    bin: "dir 0:0 0755",
    "bin/busybox": "file 0:0 0755",
    "bin/sh": "symlink 0:0 0644 -> busybox",
    "bin/ls": "hardlink 0:0 0755 -> bin/busybox",
    "bin/su": "file 0:0 4755",
    usr: "dir 0:0 0755",
    "usr/bin": "dir 0:0 0755",
    "usr/bin/ping": `file 0:0 0755 xattrs security.capability=${CAP_ALL_EP.toString("hex")}`,
    link1: "symlink 0:0 0644 -> link2",
    link2: "symlink 0:0 0644 -> /bin/sh",
    home: "dir 0:0 0755",
    "home/user": "dir 1000:1000 0750",
    "home/user/notes": "file 1000:1000 0640",
    tmp: "dir 0:0 1777",
    dev: "dir 0:0 0755",
    "dev/null": "chardev 0:0 0666 dev 1:3",
    "dev/sda": "blockdev 0:6 0660 dev 8:0",
    run: "dir 0:0 0755",
    "run/ctl": "fifo 0:0 0600 dev 0:0",
    opq: "dir 0:0 0700",
    etc: "dir 0:0 0755",
    "etc/passwd": "file 0:0 0600",
    "opq/new": "file 0:0 0644",
    "usr/bin/ls2": "hardlink 0:0 0755 -> bin/busybox",
    "etc/arch": "file 0:0 0644",
  };
}
