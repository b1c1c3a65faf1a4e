// Image references, parsed with Docker's rules (distribution/reference): an optional registry
// domain, a repository path, an optional tag and an optional digest. Docker Hub names get the
// `library/` namespace and talk to registry-1.docker.io, as `docker pull` does.
import { invalidArgument } from "../util/errors.ts";
import { isLoopbackHost } from "../util/loopback.ts";

export const DOCKER_HUB_DOMAIN = "docker.io";
export const DOCKER_HUB_REGISTRY = "registry-1.docker.io";

export interface ImageRef {
  /** Host[:port] the API is served from, e.g. "registry-1.docker.io", "localhost:5000". */
  registry: string;
  /** Repository path, e.g. "library/alpine". */
  repository: string;
  /** Tag: "latest" when neither tag nor digest was given; may be set alongside a digest. */
  tag?: string;
  /** "sha256:<64 hex>" when pinned. */
  digest?: string;
}

const COMPONENT = "[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
const COMPONENT_RE = new RegExp(`^${COMPONENT}$`);
const DOMAIN_RE = /^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$/;
export const SHA256_DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
const MAX_NAME = 255;

const bad = (ref: string, why: string) => invalidArgument(`invalid image reference ${JSON.stringify(ref)}: ${why}`, "use [registry[:port]/]repository[:tag][@sha256:<hex>], e.g. alpine:3.20");

/** Parses and validates an image reference; throws InvalidArgument with the reason. */
export function parseRef(ref: string): ImageRef {
  if (typeof ref !== "string" || ref === "") throw bad(String(ref), "empty");
  if (ref.length > 1024 || /\s/.test(ref)) throw bad(ref, "contains whitespace or is too long");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    validateDigest(ref, digest);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw bad(ref, `tag ${JSON.stringify(tag)} must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`);
  }
  const { registry, repository } = splitName(ref, rest);
  if (!tag && !digest) tag = "latest";
  return { registry, repository, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) };
}

function validateDigest(ref: string, digest: string): void {
  if (!DIGEST_RE.test(digest)) throw bad(ref, "digest must look like sha256:<64 hex digits>");
  if (!digest.startsWith("sha256:")) throw bad(ref, `digest algorithm ${digest.split(":")[0]} is not supported (only sha256)`);
  if (!SHA256_DIGEST_RE.test(digest)) throw bad(ref, "a sha256 digest has exactly 64 lowercase hex digits");
}

function splitName(ref: string, name: string): { registry: string; repository: string } {
  if (name === "") throw bad(ref, "missing repository name");
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  // Docker: the first component is a domain when it has a '.' or ':', is "localhost", or has capitals.
  const isDomain = slash >= 0 && (/[.:]/.test(first) || first === "localhost" || first.toLowerCase() !== first);
  let domain = isDomain ? first : DOCKER_HUB_DOMAIN;
  let path = isDomain ? name.slice(slash + 1) : name;
  if (isDomain && !DOMAIN_RE.test(domain)) throw bad(ref, `registry ${JSON.stringify(domain)} is not a valid host[:port]`);
  if (isDomain) checkPort(ref, domain);
  if (domain === "index.docker.io") domain = DOCKER_HUB_DOMAIN;
  if (domain === DOCKER_HUB_DOMAIN && !path.includes("/")) path = `library/${path}`;
  if (path.length + domain.length + 1 > MAX_NAME) throw bad(ref, `name longer than ${MAX_NAME} characters`);
  for (const component of path.split("/")) {
    if (!COMPONENT_RE.test(component)) {
      throw bad(ref, `repository component ${JSON.stringify(component)} must be lowercase letters, digits and single separators (. _ __ -)`);
    }
  }
  return { registry: domain === DOCKER_HUB_DOMAIN ? DOCKER_HUB_REGISTRY : domain, repository: path };
}

function checkPort(ref: string, domain: string): void {
  const m = /:(\d+)$/.exec(domain.replace(/^\[[^\]]*\]/, ""));
  if (m && (Number(m[1]) < 1 || Number(m[1]) > 65535)) throw bad(ref, `port ${m[1]} out of range`);
}

/** The canonical string: registry/repository[:tag][@digest]. */
export function formatRef(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/** Host part without the port, brackets removed for IPv6. */
export function registryHost(registry: string): string {
  if (registry.startsWith("[")) return registry.slice(1, registry.indexOf("]"));
  const colon = registry.lastIndexOf(":");
  return colon >= 0 ? registry.slice(0, colon) : registry;
}

/** localhost, 127.0.0.0/8 and ::1: the only registries spoken to over plain HTTP by default. */
export function isLoopbackRegistry(registry: string): boolean {
  return isLoopbackHost(registryHost(registry).toLowerCase());
}
