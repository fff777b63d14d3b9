/** `host:port` as written in logs and errors: an IPv6 host in brackets (`[2001:db8::1]:110`), or the colons would be ambiguous. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
