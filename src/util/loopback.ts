// Whether a host name or address is this machine's loopback: the one test behind "forwards
// listen on loopback only" (cli), "plain HTTP only to loopback registries" (oci) and "the
// dashboard is reachable beyond this host" (webui), so the three never disagree.
import { isIP } from "node:net";

/** localhost, ::1 or an IPv4 literal in 127.0.0.0/8 (no brackets, no port; case as given). */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || (isIP(host) === 4 && host.startsWith("127."));
}
