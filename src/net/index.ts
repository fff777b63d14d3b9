/**
 * Network primitives at the bottom of popgate's import graph: IP address
 * text, client address keys, `host:port`, CIDR networks and the PROXY
 * protocol. Nothing here imports another popgate folder (src/errors.ts
 * aside), so every layer may use it; test/unit/import-layers.test.ts holds
 * it to that.
 */
export { addressKey, type Ipv6NetworkSpelling } from './address-key.js';
export { parseCidr, type Cidr, type CidrParse } from './cidr.js';
export { hostPort } from './host-port.js';
export { formatIp, isIpv4Mapped, mapIpv4, networkOf, parseIp, parseIpv4, parseIpv6, unmapIpv4, withoutZone } from './ip-address.js';
export { ProxyHeaderReader, type ProxiedAddress, type ProxyHeaderEvent } from './proxy-header-reader.js';
export { encodeProxyHeader, encodeProxyV1, encodeProxyV2, forwardedAddressText, type ProxyClient } from './proxy-header-writer.js';
export { PROXY_V1_MAX_LINE, PROXY_V2_FIXED, PROXY_V2_MAX_BODY, PROXY_V2_SIGNATURE } from './proxy-protocol.js';
export { TrustedNetworks } from './trusted-networks.js';
