import { readFileSync } from 'node:fs';
import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createMetrics, noopMetrics, REFUSAL_REASONS, SESSION_MECHANISMS } from '../../src/observability/metrics.js';
import { parsePrometheus, valueOf, type Exposition } from '../helpers/prometheus.js';

async function scrape(m: ReturnType<typeof createMetrics>): Promise<Exposition> {
  return parsePrometheus(await m.render());
}

describe('createMetrics', () => {
  it('describes every popgate_ metric with HELP and TYPE', async () => {
    const exp = await scrape(createMetrics({ processMetrics: false }));
    const names = [...exp.type.keys()].filter((n) => n.startsWith('popgate_'));
    expect(names.sort()).toEqual(
      [
        'popgate_auth_attempts_total',
        'popgate_auth_cache_events_total',
        'popgate_backend_connect_seconds',
        'popgate_backend_errors_total',
        'popgate_backend_tls_handshakes_total',
        'popgate_backend_login_seconds',
        'popgate_build_info',
        'popgate_connections_accepted_total',
        'popgate_connections_refused_total',
        'popgate_kerberos_failures_total',
        'popgate_kerberos_verify_seconds',
        'popgate_relayed_bytes_total',
        'popgate_sessions_active',
        'popgate_sessions_total',
        'popgate_throttle_events_total',
        'popgate_tls_certificate_expiry_timestamp_seconds',
        'popgate_tls_handshake_failures_total',
        'popgate_tls_renegotiations_refused_total',
        'popgate_verifier_errors_total',
      ].sort(),
    );
    for (const n of names) expect(exp.help.get(n)?.length, n).toBeGreaterThan(20);
    expect(exp.type.get('popgate_sessions_active')).toBe('gauge');
    expect(exp.type.get('popgate_sessions_total')).toBe('counter');
    expect(exp.type.get('popgate_backend_login_seconds')).toBe('histogram');
  });

  it('is listed in the metrics table of docs/operations.md, metric by metric, with its type', async () => {
    const exp = await scrape(createMetrics({ processMetrics: false }));
    const doc = readFileSync('docs/operations.md', 'utf8');
    for (const [name, type] of exp.type) {
      if (!name.startsWith('popgate_')) continue;
      expect(doc, `${name} in docs/operations.md`).toMatch(new RegExp(`^\\| \`${name}\` \\| ${type} \\|`, 'm'));
    }
  });

  it('sets build info to 1 with the version and the Node.js version', async () => {
    const exp = await scrape(createMetrics({ processMetrics: false, version: '9.8.7' }));
    expect(valueOf(exp, 'popgate_build_info', { version: '9.8.7', node: process.version })).toBe(1);
    // Without an explicit version: package.json's.
    const dflt = await scrape(createMetrics({ processMetrics: false }));
    expect(dflt.samples.find((s) => s.name === 'popgate_build_info')?.labels.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('counts connections and sessions per listener, moving a session from none to its mechanism', async () => {
    const m = createMetrics({ processMetrics: false });
    const a = m.listener('a');
    const b = m.listener('b');
    expect(m.listener('a')).toBe(a); // made once per listener
    a.accepted();
    a.accepted();
    a.accepted();
    b.accepted();
    a.refused('TOO_MANY_FROM_ADDRESS');
    a.refused('EARLY_TALKER');
    a.refused('EARLY_TALKER');
    b.tlsHandshakeFailed();
    a.tlsRenegotiationRefused();
    a.sessionStarted();
    a.sessionStarted();
    a.sessionStarted();
    a.sessionLoggedIn('PLAIN');
    a.sessionLoggedIn('KPOP');
    let exp = await scrape(m);
    expect(valueOf(exp, 'popgate_connections_accepted_total', { listener: 'a' })).toBe(3);
    expect(valueOf(exp, 'popgate_connections_accepted_total', { listener: 'b' })).toBe(1);
    expect(valueOf(exp, 'popgate_connections_refused_total', { listener: 'a', reason: 'EARLY_TALKER' })).toBe(2);
    expect(valueOf(exp, 'popgate_connections_refused_total', { listener: 'a', reason: 'TOO_MANY_FROM_ADDRESS' })).toBe(1);
    // Every reason is exported (0 until it happens), so rate() works from the first refusal.
    for (const reason of REFUSAL_REASONS) expect(valueOf(exp, 'popgate_connections_refused_total', { listener: 'b', reason })).toBe(0);
    expect(valueOf(exp, 'popgate_tls_handshake_failures_total', { listener: 'b' })).toBe(1);
    expect(valueOf(exp, 'popgate_tls_handshake_failures_total', { listener: 'a' })).toBe(0);
    expect(valueOf(exp, 'popgate_tls_renegotiations_refused_total', { listener: 'a' })).toBe(1);
    expect(valueOf(exp, 'popgate_tls_renegotiations_refused_total', { listener: 'b' })).toBe(0);
    expect(valueOf(exp, 'popgate_sessions_active', { listener: 'a', mechanism: 'none' })).toBe(1);
    expect(valueOf(exp, 'popgate_sessions_active', { listener: 'a', mechanism: 'PLAIN' })).toBe(1);
    expect(valueOf(exp, 'popgate_sessions_active', { listener: 'a', mechanism: 'KPOP' })).toBe(1);
    expect(valueOf(exp, 'popgate_sessions_total', { listener: 'a', mechanism: 'PLAIN' })).toBe(0);

    a.sessionEnded('PLAIN');
    a.sessionEnded(undefined);
    exp = await scrape(m);
    expect(valueOf(exp, 'popgate_sessions_active', { listener: 'a', mechanism: 'none' })).toBe(0);
    expect(valueOf(exp, 'popgate_sessions_active', { listener: 'a', mechanism: 'PLAIN' })).toBe(0);
    expect(valueOf(exp, 'popgate_sessions_active', { listener: 'a', mechanism: 'KPOP' })).toBe(1);
    expect(valueOf(exp, 'popgate_sessions_total', { listener: 'a', mechanism: 'PLAIN' })).toBe(1);
    expect(valueOf(exp, 'popgate_sessions_total', { listener: 'a', mechanism: 'none' })).toBe(1);
    for (const mechanism of SESSION_MECHANISMS) expect(valueOf(exp, 'popgate_sessions_total', { listener: 'b', mechanism })).toBe(0);
  });

  it('counts login attempts by mechanism, outcome and catalogue code', async () => {
    const m = createMetrics({ processMetrics: false });
    m.loginAttempt({ mechanism: 'PLAIN', outcome: 'success' });
    m.loginAttempt({ mechanism: 'PLAIN', outcome: 'failure', code: 'AUTH_FAILED' });
    m.loginAttempt({ mechanism: 'PLAIN', outcome: 'failure', code: 'AUTH_FAILED' });
    m.loginAttempt({ mechanism: 'USER', outcome: 'failure', code: 'LOGIN_THROTTLED' });
    m.loginAttempt({ mechanism: 'GSSAPI', outcome: 'abandoned' });
    const exp = await scrape(m);
    const auth = (labels: Record<string, string>): number | undefined => valueOf(exp, 'popgate_auth_attempts_total', labels);
    expect(auth({ mechanism: 'PLAIN', outcome: 'success', code: 'none' })).toBe(1);
    expect(auth({ mechanism: 'PLAIN', outcome: 'failure', code: 'AUTH_FAILED' })).toBe(2);
    expect(auth({ mechanism: 'USER', outcome: 'failure', code: 'LOGIN_THROTTLED' })).toBe(1);
    expect(auth({ mechanism: 'GSSAPI', outcome: 'abandoned', code: 'none' })).toBe(1);
    expect(auth({ mechanism: 'USER', outcome: 'success' })).toBeUndefined();
  });

  it('counts throttle events, backend latencies and errors, relayed bytes, Kerberos checks and verifier errors', async () => {
    const m = createMetrics({ processMetrics: false });
    let exp = await scrape(m);
    for (const event of ['delay', 'lockout', 'refused']) expect(valueOf(exp, 'popgate_throttle_events_total', { event })).toBe(0);
    expect(valueOf(exp, 'popgate_relayed_bytes_total', { direction: 'client_to_backend' })).toBe(0);
    expect(valueOf(exp, 'popgate_kerberos_verify_seconds_count', { check: 'kpop' })).toBe(0);

    m.throttle('delay');
    m.throttle('delay');
    m.throttle('lockout');
    m.backendConnected(0.002);
    m.backendConnected(3);
    m.backendLoggedIn(0.02);
    m.backendError('BACKEND_UNREACHABLE', 'connect');
    m.backendError('BACKEND_UNREACHABLE', 'connect');
    m.backendError('BACKEND_LOGIN_REJECTED', 'login');
    m.bytesRelayed(10, 5000);
    m.bytesRelayed(7, 1);
    m.kerberosCheck('kpop', 0.0003);
    m.kerberosCheck('kpop', 0.0004, 'replay');
    m.kerberosCheck('password', 2, 'kdc-unreachable');
    m.verifierError('kerberos');
    exp = await scrape(m);
    expect(valueOf(exp, 'popgate_throttle_events_total', { event: 'delay' })).toBe(2);
    expect(valueOf(exp, 'popgate_throttle_events_total', { event: 'lockout' })).toBe(1);
    expect(valueOf(exp, 'popgate_backend_connect_seconds_count')).toBe(2);
    expect(valueOf(exp, 'popgate_backend_connect_seconds_sum')).toBeCloseTo(3.002, 6);
    expect(valueOf(exp, 'popgate_backend_connect_seconds_bucket', { le: '0.0025' })).toBe(1);
    expect(valueOf(exp, 'popgate_backend_connect_seconds_bucket', { le: '+Inf' })).toBe(2);
    expect(valueOf(exp, 'popgate_backend_login_seconds_count')).toBe(1);
    expect(valueOf(exp, 'popgate_backend_errors_total', { code: 'BACKEND_UNREACHABLE', phase: 'connect' })).toBe(2);
    expect(valueOf(exp, 'popgate_backend_errors_total', { code: 'BACKEND_LOGIN_REJECTED', phase: 'login' })).toBe(1);
    expect(valueOf(exp, 'popgate_relayed_bytes_total', { direction: 'client_to_backend' })).toBe(17);
    expect(valueOf(exp, 'popgate_relayed_bytes_total', { direction: 'backend_to_client' })).toBe(5001);
    expect(valueOf(exp, 'popgate_kerberos_verify_seconds_count', { check: 'kpop' })).toBe(2);
    expect(valueOf(exp, 'popgate_kerberos_verify_seconds_count', { check: 'password' })).toBe(1);
    expect(valueOf(exp, 'popgate_kerberos_verify_seconds_count', { check: 'gssapi' })).toBe(0);
    expect(valueOf(exp, 'popgate_kerberos_failures_total', { check: 'kpop', failure: 'replay' })).toBe(1);
    expect(valueOf(exp, 'popgate_kerberos_failures_total', { check: 'password', failure: 'kdc-unreachable' })).toBe(1);
    expect(valueOf(exp, 'popgate_verifier_errors_total', { verifier: 'kerberos' })).toBe(1);
  });

  it('reads the certificates at each scrape from the last source given, in whole seconds', async () => {
    const m = createMetrics({ processMetrics: false });
    expect((await scrape(m)).samples.filter((s) => s.name === 'popgate_tls_certificate_expiry_timestamp_seconds')).toEqual([]);
    let certs = [{ listener: 'pop3s', certFile: '/tls/a.pem', notAfterMs: 1_800_000_000_999 }];
    m.certificates(() => certs);
    expect(valueOf(await scrape(m), 'popgate_tls_certificate_expiry_timestamp_seconds', { listener: 'pop3s', cert_file: '/tls/a.pem' })).toBe(1_800_000_000);
    // A renewal (the source's answer changes): the old series goes, the new one comes.
    certs = [{ listener: 'pop3s', certFile: '/tls/b.pem', notAfterMs: 1_900_000_000_000 }];
    const after = await scrape(m);
    expect(valueOf(after, 'popgate_tls_certificate_expiry_timestamp_seconds', { listener: 'pop3s', cert_file: '/tls/a.pem' })).toBeUndefined();
    expect(valueOf(after, 'popgate_tls_certificate_expiry_timestamp_seconds', { listener: 'pop3s', cert_file: '/tls/b.pem' })).toBe(1_900_000_000);
  });

  it('uses a private registry per instance, with the default process metrics', async () => {
    const one = createMetrics();
    const two = createMetrics({ processMetrics: false });
    one.listener('x').accepted();
    const a = await scrape(one);
    const b = await scrape(two);
    expect(valueOf(a, 'popgate_connections_accepted_total', { listener: 'x' })).toBe(1);
    expect(valueOf(b, 'popgate_connections_accepted_total', { listener: 'x' })).toBeUndefined();
    expect(a.type.get('process_cpu_user_seconds_total')).toBe('counter');
    expect(a.type.has('nodejs_eventloop_lag_seconds')).toBe(true);
    expect(b.type.has('process_cpu_user_seconds_total')).toBe(false);
    // Never the global registry.
    expect(globalRegistry.getSingleMetric('popgate_build_info')).toBeUndefined();
    expect(one.contentType).toMatch(/^text\/plain/);
  });
});

describe('noopMetrics', () => {
  it('accepts every call and renders nothing', async () => {
    const l = noopMetrics.listener('a');
    l.accepted();
    l.refused('SHUTTING_DOWN');
    l.tlsHandshakeFailed();
    l.tlsRenegotiationRefused();
    l.sessionStarted();
    l.sessionLoggedIn('PLAIN');
    l.sessionEnded('PLAIN');
    noopMetrics.loginAttempt({ mechanism: 'PLAIN', outcome: 'success' });
    noopMetrics.throttle('delay');
    noopMetrics.backendConnected(1);
    noopMetrics.backendLoggedIn(1);
    noopMetrics.backendError('BACKEND_TIMEOUT', 'greeting');
    noopMetrics.bytesRelayed(1, 1);
    noopMetrics.kerberosCheck('gssapi', 1, 'skew');
    noopMetrics.verifierError('http');
    noopMetrics.certificates(() => [{ listener: 'a', certFile: '/a.pem', notAfterMs: 0 }]);
    expect(await noopMetrics.render()).toBe('');
  });
});
