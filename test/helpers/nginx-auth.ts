/**
 * The nginx-style auth service fixture (test/fixtures/nginx-auth/auth.py,
 * python3 http.server, written the way nginx users write them), started on a
 * free loopback port with its request log readable by tests; plain http, or
 * https (https://localhost:<port>/auth) when started with --tls-cert/--tls-key.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('../fixtures/nginx-auth/auth.py', import.meta.url));
const PYTHON = '/usr/bin/python3';

export interface AuthService {
  url: string;
  logFile: string;
  /** Every question the service got: headers as [name, value] (Auth-Pass left out). */
  log(): Promise<Array<{ path: string; headers: Record<string, string> }>>;
  stop(): Promise<void>;
}

/** Starts auth.py with `args` (see its --help); its log goes to `dir/<name>.log`. */
export async function startAuthService(dir: string, name: string, args: string[]): Promise<AuthService> {
  const logFile = join(dir, `${name}.log`);
  const child: ChildProcess = spawn(PYTHON, [FIXTURE, '--port', '0', '--log', logFile, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`auth.py did not start: ${stderr}`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`auth.py exited ${code}: ${stderr}`));
    });
  });
  // With --tls-cert the service speaks https; the test PKI's server certificate names localhost.
  const https = args.includes('--tls-cert');
  return {
    url: https ? `https://localhost:${port}/auth` : `http://127.0.0.1:${port}/auth`,
    logFile,
    async log() {
      const text = await readFile(logFile, 'utf8').catch(() => '');
      return text
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => {
          const rec = JSON.parse(l) as { path: string; headers: Array<[string, string]> };
          return { path: rec.path, headers: Object.fromEntries(rec.headers) };
        });
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve();
          return;
        }
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

