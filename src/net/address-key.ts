/**
 * The key a client address is counted under: the per-address connection
 * limit and the login throttle both count clients, not sockets. IPv4 is its
 * own key; an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, how a dual-stack
 * listener reports an IPv4 client) counts as that IPv4 address; other IPv6
 * counts by its /64 network (one subscriber usually gets a whole /64, so
 * counting single addresses would give it 2^64 slots). A zone is dropped.
 *
 * The two callers write the /64 differently, and their keys are already in
 * logs, metrics labels and Redis, so the spelling is a parameter:
 *
 *   'groups'      2001:db8:0:0::/64   the four network groups written out
 *                                      (limits.maxConnectionsPerIp, its log field)
 *   'compressed'  2001:db8::/64       canonical IPv6 text (auth.throttle's store keys)
 */
import { isIPv4 } from 'node:net';
import { formatIp, isIpv4Mapped, parseIpv6, withoutZone } from './ip-address.js';

/** How an IPv6 /64 key is spelled (see the module comment). */
export type Ipv6NetworkSpelling = 'groups' | 'compressed';

/** The key of an IP address; undefined when `address` is not one (each caller decides what such text counts under). */
export function addressKey(address: string, ipv6: Ipv6NetworkSpelling): string | undefined {
  const bare = withoutZone(address);
  if (isIPv4(bare)) return bare;
  const bytes = parseIpv6(bare);
  if (bytes === undefined) return undefined;
  if (isIpv4Mapped(bytes)) return formatIp(bytes.subarray(12));
  if (ipv6 === 'compressed') return `${formatIp(Buffer.concat([bytes.subarray(0, 8), Buffer.alloc(8)]))}/64`;
  const groups = [0, 2, 4, 6].map((i) => bytes.readUInt16BE(i).toString(16));
  return `${groups.join(':')}::/64`;
}
