/**
 * Free TCP ports for private test servers (Dovecot, the gateway, KDCs...).
 * Every integration file starts its own servers on loopback, in parallel with
 * other files, so nothing may use a fixed port. The port is free when this
 * returns; a server started right after binds it (tiny race, accepted; the
 * Dovecot helper retries on "Address already in use").
 */
import net from 'node:net';
export function freePort(host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.unref();
        srv.once('error', reject);
        srv.listen({ host, port: 0, exclusive: true }, () => {
            const addr = srv.address();
            if (addr === null || typeof addr === 'string') {
                srv.close();
                reject(new Error(`freePort: unexpected address ${String(addr)}`));
                return;
            }
            const { port } = addr;
            srv.close((err) => (err ? reject(err) : resolve(port)));
        });
    });
}
//# sourceMappingURL=ports.js.map