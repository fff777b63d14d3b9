/**
 * deploy/systemd/popgate.service and its example config popgate.yaml: the unit
 * is parsed and its directives checked (sandboxing, start/stop/reload, paths
 * that match the config); the config must pass the real
 * `popgate check-config --schema-only` exactly as shipped, and the full
 * `popgate check-config` once real files (a certificate and its key, user
 * file, master password, keytab, replay cache directory) are at its paths
 * (re-rooted into a temp dir). Where systemd-analyze is installed, the
 * unit (with its paths pointed at this checkout and this Node) must also pass
 * `systemd-analyze verify`, and `systemd-analyze security --offline` must rate
 * it at most 2.0 ("OK"); without systemd-analyze only the parser checks run,
 * and the test name says so.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runProgram } from '../helpers/clients.js';
import {
  adminOf,
  checkRerooted,
  checkSchemaOnly,
  DEPLOY,
  drainTimeoutSeconds,
  fileTempDir,
  get,
  listenersOf,
  parseDurationSeconds,
  parseYaml,
  pathEntries,
  rerootConfig,
  ROOT,
  writeRealFiles,
} from '../helpers/deploy.js';

const UNIT_FILE = join(DEPLOY, 'systemd', 'popgate.service');
const CONFIG_FILE = join(DEPLOY, 'systemd', 'popgate.yaml');
const unitText = readFileSync(UNIT_FILE, 'utf8');
const config = parseYaml(readFileSync(CONFIG_FILE, 'utf8'));

/** section -> key -> values in order (systemd allows repeated keys). */
type Unit = Map<string, Map<string, string[]>>;

function parseUnit(text: string): Unit {
  const unit: Unit = new Map();
  let section: Map<string, string[]> | undefined;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = pending + raw.trim();
    pending = '';
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    if (line.endsWith('\\')) {
      pending = `${line.slice(0, -1)} `;
      continue;
    }
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = new Map();
      unit.set(header[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    if (!section || eq < 0) throw new Error(`unit: unexpected line ${JSON.stringify(line)}`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    section.set(key, [...(section.get(key) ?? []), value]);
  }
  return unit;
}

const unit = parseUnit(unitText);
const service = unit.get('Service') ?? new Map<string, string[]>();

function one(key: string): string {
  const v = service.get(key);
  if (!v || v.length !== 1) throw new Error(`[Service] ${key}: expected exactly one value, got ${JSON.stringify(v)}`);
  return v[0]!;
}

/** `LoadCredential=ID:PATH` -> ID -> PATH. */
function credentials(): Map<string, string> {
  return new Map((service.get('LoadCredential') ?? []).map((v) => [v.slice(0, v.indexOf(':')), v.slice(v.indexOf(':') + 1)]));
}

const HAVE_SYSTEMD_ANALYZE = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;

const tmp = fileTempDir('popgate-systemd-');

describe('deploy/systemd/popgate.service (parsed)', () => {
  it('has the three sections and starts after the network', () => {
    expect([...unit.keys()]).toEqual(['Unit', 'Service', 'Install']);
    expect(unit.get('Unit')?.get('After')).toEqual(['network-online.target']);
    expect(unit.get('Unit')?.get('Wants')).toEqual(['network-online.target']);
    expect(unit.get('Install')?.get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('checks the config before starting, serves it, reloads with SIGHUP and drains on SIGTERM', () => {
    expect(one('Type')).toBe('simple');
    expect(one('ExecStartPre')).toBe('/usr/bin/node /opt/popgate/dist/cli/main.js check-config /etc/popgate/popgate.yaml');
    expect(one('ExecStart')).toBe('/usr/bin/node /opt/popgate/dist/cli/main.js serve --config /etc/popgate/popgate.yaml');
    expect(one('ExecReload')).toBe('/bin/kill -HUP $MAINPID');
    expect(one('KillSignal')).toBe('SIGTERM');
    expect(one('Restart')).toBe('on-failure');
    expect(one('RestartPreventExitStatus')).toBe('78');
    // The stop timeout leaves room for the drain.
    expect(parseDurationSeconds(one('TimeoutStopSec'))).toBeGreaterThan(drainTimeoutSeconds(config));
    expect(parseDurationSeconds(one('TimeoutStopSec'))).toBeGreaterThanOrEqual(drainTimeoutSeconds(config) + 10);
  });

  it('is sandboxed', () => {
    const expected: Record<string, string> = {
      DynamicUser: 'yes',
      AmbientCapabilities: 'CAP_NET_BIND_SERVICE',
      CapabilityBoundingSet: 'CAP_NET_BIND_SERVICE',
      NoNewPrivileges: 'yes',
      ProtectSystem: 'strict',
      ProtectHome: 'yes',
      PrivateTmp: 'yes',
      PrivateDevices: 'yes',
      ProtectKernelTunables: 'yes',
      ProtectKernelModules: 'yes',
      ProtectKernelLogs: 'yes',
      ProtectControlGroups: 'yes',
      RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX',
      RestrictNamespaces: 'yes',
      RestrictSUIDSGID: 'yes',
      LockPersonality: 'yes',
      StateDirectory: 'popgate',
      ConfigurationDirectory: 'popgate',
    };
    for (const [key, value] of Object.entries(expected)) expect(service.get(key), key).toEqual([value]);
    expect(service.get('SystemCallFilter')?.[0]).toBe('@system-service');
    // V8's JIT needs W+X memory.
    expect(service.has('MemoryDenyWriteExecute')).toBe(false);
    expect(service.has('User'), 'DynamicUser, no fixed user').toBe(false);
  });

  it('binds ports below 1024 only because it holds CAP_NET_BIND_SERVICE', () => {
    const low = listenersOf(config).filter((l) => l.port < 1024);
    expect(low.map((l) => l.port).sort()).toEqual([110, 995]);
    expect(one('AmbientCapabilities')).toContain('CAP_NET_BIND_SERVICE');
  });

  it('every path in popgate.yaml is a credential it loads, its state directory, or the config directory', () => {
    const creds = credentials();
    const credDir = '/run/credentials/popgate.service/';
    const stateDir = `/var/lib/${one('StateDirectory')}`;
    const configDir = `/etc/${one('ConfigurationDirectory')}`;
    expect(one('ExecStart')).toContain(`${configDir}/popgate.yaml`);
    const entries = pathEntries(config);
    expect(entries.length).toBeGreaterThan(0);
    for (const e of entries) {
      if (e.key === 'rcacheDir') {
        expect(e.value === stateDir || e.value.startsWith(`${stateDir}/`), `${e.pattern} ${e.value} under ${stateDir}`).toBe(true);
      } else if (e.value.startsWith(credDir)) {
        const id = e.value.slice(credDir.length);
        expect(creds.get(id), `${e.pattern}: LoadCredential=${id}:...`).toBeDefined();
        expect(creds.get(id)!.startsWith(`${configDir}/`), `credential ${id} comes from ${configDir}`).toBe(true);
      } else {
        expect(e.value.startsWith(`${configDir}/`), `${e.pattern} ${e.value}`).toBe(true);
      }
    }
    // Every credential is used by the config.
    for (const id of creds.keys()) expect(entries.map((e) => e.value), `credential ${id}`).toContain(`${credDir}${id}`);
    // The admin listener stays on loopback on a host.
    expect(adminOf(config)).toEqual({ address: '127.0.0.1', port: 9110 });
  });
});

describe('deploy/systemd/popgate.yaml', () => {
  it('passes popgate check-config --schema-only exactly as shipped', async () => {
    const r = await checkSchemaOnly(CONFIG_FILE);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(get(config, ['shutdown', 'drainTimeout'])).toBe('30s');
  });

  it('passes the full popgate check-config with real files at its paths (re-rooted into a temp dir)', async () => {
    const root = join(tmp(), 'root');
    await writeRealFiles(rerootConfig(config, root), join(tmp(), 'pki'));
    const r = await checkRerooted(config, root, 'etc/popgate/popgate.yaml');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // Every file was loaded, not just named.
    for (const e of pathEntries(config)) expect(r.stdout, e.pattern).toContain(`: ${join(root, e.value)}: `);
  });
});

describe('deploy/systemd/popgate.service (systemd-analyze)', () => {
  if (HAVE_SYSTEMD_ANALYZE) {
    it('systemd-analyze verify accepts it and security --offline rates its exposure at most 2.0', async () => {
      // verify checks that the Exec binaries exist: point them at this Node and checkout.
      const local = join(tmp(), 'popgate.service');
      await writeFile(local, unitText.replaceAll('/usr/bin/node', process.execPath).replaceAll('/opt/popgate', ROOT));
      const verify = await runProgram('systemd-analyze', ['verify', local], { timeoutMs: 30_000 });
      expect(verify.stderr).toBe('');
      expect(verify.code).toBe(0);
      const security = await runProgram('systemd-analyze', ['security', '--offline=true', '--no-pager', local], { timeoutMs: 30_000 });
      expect(security.code, security.stderr).toBe(0);
      const m = /Overall exposure level for popgate\.service: (\d+(?:\.\d+)?)/.exec(security.stdout);
      expect(m, security.stdout).not.toBeNull();
      expect(Number(m![1])).toBeLessThanOrEqual(2.0);
    });
  } else {
    it('systemd-analyze is not installed here: only the parser checks above ran (no verify, no security rating)', () => {
      expect(HAVE_SYSTEMD_ANALYZE).toBe(false);
    });
  }
});
