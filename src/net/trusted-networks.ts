/**
 * A set of client networks (CIDRs or single addresses, IPv4 and IPv6) and
 * the question "is this peer in it?": who may send a PROXY header, who is
 * exempt from the login throttle. The entries come from the configuration,
 * already checked by ./cidr.ts; matching is Node's BlockList.
 */
import { BlockList, isIP } from 'node:net';
import { withoutZone } from './ip-address.js';

export class TrustedNetworks {
  private readonly list = new BlockList();

  /** Throws for an entry that is not an IP address or network. */
  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [addr = '', bits] = cidr.split('/');
      const family = isIP(addr);
      if (family === 0) throw new Error(`not an IP network: ${cidr}`);
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (bits === undefined) this.list.addAddress(addr, type);
      else this.list.addSubnet(addr, Number(bits), type);
    }
  }

  /** IPv4-mapped IPv6 peers (`::ffff:10.0.0.1`, dual-stack listeners) match IPv4 networks. */
  has(peer: string | undefined): boolean {
    if (!peer) return false;
    const address = withoutZone(peer); // zones (fe80::1%eth0) do not matter here
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) return this.list.check(mapped[1]!, 'ipv4');
    const family = isIP(address);
    return family !== 0 && this.list.check(address, family === 4 ? 'ipv4' : 'ipv6');
  }
}
