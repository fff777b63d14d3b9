/**
 * The Node.js lines popgate supports (kept in step with package.json
 * `engines.node` by a test) and what `popgate version` reports about the
 * runtime. No imports: main.ts checks the version before loading anything
 * that might need a newer Node.
 */

/** The oldest Node popgate runs on: 22.12 (maintenance LTS); 24 LTS is what CI, the benchmark and the image use. */
export const MINIMUM_NODE = '22.12.0';

/** Why this Node cannot run popgate, or undefined when it can. `version` is `process.versions.node` (no `v`). */
export function unsupportedNode(version: string): string | undefined {
  const have = version.replace(/^v/, '').split('.').map((n) => Number.parseInt(n, 10));
  const need = MINIMUM_NODE.split('.').map(Number);
  for (let i = 0; i < need.length; i += 1) {
    const h = have[i] ?? 0;
    const n = need[i] ?? 0;
    if (Number.isNaN(h)) break;
    if (h > n) return undefined;
    if (h < n) {
      return `popgate needs Node.js ${MINIMUM_NODE} or newer (24 LTS recommended); this is v${version.replace(/^v/, '')}. ` +
        'Run it through the npm scripts (scripts/toolchain.sh installs Node 24 into .toolchain/) or install a supported Node.';
    }
  }
  return undefined;
}

/** `Node v24.22.3, OpenSSL 3.5.9`: what the gateway's TLS and crypto run on. */
export function runtimeDescription(versions: NodeJS.ProcessVersions = process.versions): string {
  return `Node v${versions.node}, OpenSSL ${versions.openssl}`;
}
