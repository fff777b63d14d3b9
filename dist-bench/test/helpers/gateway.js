/**
 * Starts the real gateway in the test process on ephemeral loopback ports,
 * configured through the same YAML loader operators use, with its pino
 * output captured so tests can assert on log lines (and on secrets absent).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { hashPassword } from '../../src/auth/index.js';
import { parseConfigText } from '../../src/config/index.js';
import { REDACT_PATHS } from '../../src/observability/logger.js';
import { Gateway } from '../../src/server/gateway.js';
export async function startTestGateway(opts) {
    const dir = await mkdtemp(join(tmpdir(), 'popgate-gw-'));
    const lines = await Promise.all(opts.users.map(async (u) => `${u.name}:${await hashPassword(u.password, { scryptLogN: 10 })}`));
    await writeFile(join(dir, 'users'), lines.join('\n') + '\n');
    for (const [name, content] of Object.entries(opts.files ?? {}))
        await writeFile(join(dir, name), content);
    const yaml = `
log: { level: debug }
listeners:
  - { name: t-pop3s, kind: pop3s, address: 127.0.0.1, port: 0, tls: { certFile: ${opts.certFile}, keyFile: ${opts.keyFile} } }
  - { name: t-pop3, kind: pop3, address: 127.0.0.1, port: 0, allowPlaintextAuth: ${opts.allowPlaintextAuth ?? false},
      tls: { certFile: ${opts.certFile}, keyFile: ${opts.keyFile} } }
auth: { userFile: users, failureDelay: ${opts.failureDelay ?? '0s'}, maxAttempts: ${opts.maxAuthAttempts ?? 3} }
backend:
  host: 127.0.0.1
  port: ${opts.backendPort}
  timeouts: ${opts.backendTimeouts ?? '{ connect: 5s, greeting: 5s, login: 10s }'}
  login: ${opts.login}
${opts.extra ?? ''}
`;
    const config = await parseConfigText(yaml, { baseDir: dir, source: 'test' });
    const logs = [];
    let raw = '';
    const sink = new Writable({
        write(chunk, _enc, cb) {
            const text = chunk.toString('utf8');
            raw += text;
            for (const line of text.split('\n'))
                if (line)
                    logs.push(JSON.parse(line));
            cb();
        },
    });
    const logger = pino({ level: 'trace', redact: { paths: [...REDACT_PATHS], censor: '***' } }, sink);
    const gateway = await Gateway.start(config, logger);
    return {
        gateway,
        dir,
        logs,
        rawLog: () => raw,
        port(kind) {
            const l = gateway.bound.find((b) => b.kind === kind);
            if (!l)
                throw new Error(`no ${kind} listener`);
            return l.port;
        },
        async stop(drainMs = 0) {
            await gateway.stop(drainMs);
            await rm(dir, { recursive: true, force: true });
        },
    };
}
/** Waits until a log record matching `pred` appears (logs are written asynchronously to the sink). */
export async function waitForLog(gw, pred, timeoutMs = 5_000) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const hit = gw.logs.find(pred);
        if (hit)
            return hit;
        if (Date.now() > deadline)
            throw new Error(`no matching log record within ${timeoutMs} ms; have:\n${gw.rawLog()}`);
        await new Promise((r) => setTimeout(r, 20));
    }
}
//# sourceMappingURL=gateway.js.map