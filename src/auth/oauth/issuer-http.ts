/**
 * The requests the token validator makes to the issuer (discovery document,
 * JWKS, RFC 7662 introspection): node:http/https with keep-alive agents, a
 * deadline per request on the injected clock, redirects not followed, answers
 * capped in size. The agent is chosen per URL (../proxy-agent.ts): direct, or
 * through the forward proxy of `proxy` (auth.oauth.proxy; null: HTTP_PROXY/
 * HTTPS_PROXY/NO_PROXY, so discovery, jwks_uri and introspection on different
 * hosts may go different ways), an https:// URL through a CONNECT tunnel.
 * A caller's `agents` replace that choice for their protocol.
 *
 * Any failure is GatewayError('VERIFIER_UNAVAILABLE') whose detail starts
 * with `<endpoint>-unreachable` (no connection, reset), `<endpoint>-timeout`
 * or `<endpoint>-invalid` (not 200, not a JSON object, too large): the issuer
 * cannot answer, which is never the client's fault. Details name the URL
 * (credentials and query left out), never a request body (it may hold a
 * token or the client secret).
 */
import { setMaxListeners } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { Clock } from '../../clock.js';
import { GatewayError } from '../../errors.js';
import { createEgressAgents, type EgressRoute } from '../proxy-agent.js';
import type { ProxyEnv, ProxySetting } from '../proxy-env.js';

export type IssuerEndpoint = 'issuer' | 'jwks' | 'introspection';

/** Largest answer read, by default: a JWKS of many keys fits easily. */
export const ISSUER_MAX_ANSWER_BYTES = 1024 * 1024;

/** An idle kept-alive connection to the issuer is closed after this long. */
const IDLE_MS = 30_000;

export interface IssuerAgents {
  readonly http?: http.Agent;
  readonly https?: https.Agent;
}

export interface IssuerHttpOptions {
  readonly timeoutMs: number;
  readonly clock: Clock;
  /** Agents to use instead of popgate's own (which close() destroys; these it leaves alone). */
  readonly agents?: IssuerAgents;
  /** The forward proxy setting (auth.oauth.proxy); default 'none'. */
  readonly proxy?: ProxySetting;
  /** The environment consulted when proxy is null; default process.env. */
  readonly env?: ProxyEnv;
  readonly maxBytes?: number;
}

export interface IssuerRequest {
  readonly url: URL;
  readonly endpoint: IssuerEndpoint;
  readonly method?: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  /** A form body (POST). */
  readonly body?: string;
  /** Abandons the request (the caller gave up). */
  readonly signal?: AbortSignal;
}

export interface IssuerAnswer {
  readonly status: number;
  readonly body: Buffer;
}

export interface IssuerHttp {
  request(req: IssuerRequest): Promise<IssuerAnswer>;
  /**
   * How `url` is reached: the agent and the proxy (shownProxy 'none' when
   * direct; 'caller agent' for a caller's). Throws on an unusable proxy URL.
   */
  route(url: URL): Pick<EgressRoute, 'agent' | 'shownProxy'>;
  /** A request whose answer must be 200 with a JSON object. */
  json(req: IssuerRequest): Promise<Record<string, unknown>>;
  /** Aborts what is in flight and closes popgate's own agents. */
  close(): void;
}

export function unavailable(detail: string, cause?: unknown): GatewayError {
  return new GatewayError('VERIFIER_UNAVAILABLE', detail, cause !== undefined ? { cause } : undefined);
}

/** `p`, or VERIFIER_UNAVAILABLE as soon as `signal` aborts (the shared request goes on for the others). */
export function abandonable<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(unavailable('abandoned: the login was cancelled'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(unavailable('abandoned: the login was cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** The URL for messages: no credentials, no query (it may hold a key). */
export function shownUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function errorCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}

export function createIssuerHttp(opts: IssuerHttpOptions): IssuerHttp {
  const maxBytes = opts.maxBytes ?? ISSUER_MAX_ANSWER_BYTES;
  const agentOptions: http.AgentOptions = { keepAlive: true, maxSockets: 16, maxFreeSockets: 4, scheduling: 'lifo', timeout: IDLE_MS };
  const egress = createEgressAgents({ proxy: opts.proxy === undefined ? 'none' : opts.proxy, ...(opts.env ? { env: opts.env } : {}), agentOptions });

  function route(url: URL): Pick<EgressRoute, 'agent' | 'shownProxy'> {
    const given = url.protocol === 'https:' ? opts.agents?.https : opts.agents?.http;
    return given ? { agent: given, shownProxy: 'caller agent' } : egress.route(url);
  }
  const closer = new AbortController();
  // One listener per request in flight: not a leak.
  setMaxListeners(0, closer.signal);

  function request(req: IssuerRequest): Promise<IssuerAnswer> {
    const where = shownUrl(req.url);
    return new Promise<IssuerAnswer>((resolve, reject) => {
      if (closer.signal.aborted) {
        reject(unavailable(`${req.endpoint}-unreachable: the token validator is closed`));
        return;
      }
      if (req.signal?.aborted) {
        reject(unavailable(`${req.endpoint}-unreachable: abandoned`));
        return;
      }
      let settled = false;
      const finish = (err: GatewayError | undefined, answer?: IssuerAnswer): void => {
        if (settled) return;
        settled = true;
        cancelTimer();
        closer.signal.removeEventListener('abort', onClose);
        req.signal?.removeEventListener('abort', onAbandon);
        if (err) {
          r.destroy();
          reject(err);
        } else resolve(answer as IssuerAnswer);
      };
      const isHttps = req.url.protocol === 'https:';
      let agent: http.Agent;
      try {
        agent = route(req.url).agent;
      } catch (err) {
        reject(unavailable(`${req.endpoint}-unreachable: ${errorCode(err)} (for ${where})`, err));
        return;
      }
      const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'popgate', ...req.headers };
      if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
      const r = (isHttps ? https : http).request(req.url, { method: req.method ?? 'GET', headers, agent });
      const cancelTimer = opts.clock.setTimer(
        () => finish(unavailable(`${req.endpoint}-timeout: no answer from ${where} within ${opts.timeoutMs} ms`)),
        opts.timeoutMs,
      );
      const onClose = (): void => finish(unavailable(`${req.endpoint}-unreachable: the token validator is closed`));
      const onAbandon = (): void => finish(unavailable(`${req.endpoint}-unreachable: abandoned`));
      closer.signal.addEventListener('abort', onClose, { once: true });
      req.signal?.addEventListener('abort', onAbandon, { once: true });
      r.on('error', (err) => finish(unavailable(`${req.endpoint}-unreachable: ${errorCode(err)} from ${where}`, err)));
      r.on('response', (res) => {
        const status = res.statusCode ?? 0;
        const declared = Number(res.headers['content-length']);
        if (declared > maxBytes) {
          finish(unavailable(`${req.endpoint}-invalid: ${where} answered ${declared} bytes (at most ${maxBytes} read)`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) finish(unavailable(`${req.endpoint}-invalid: ${where} answered more than ${maxBytes} bytes`));
          else chunks.push(chunk);
        });
        res.on('error', (err) => finish(unavailable(`${req.endpoint}-unreachable: ${errorCode(err)} from ${where}`, err)));
        res.on('end', () => finish(undefined, { status, body: Buffer.concat(chunks) }));
      });
      r.end(req.body);
    });
  }

  async function json(req: IssuerRequest): Promise<Record<string, unknown>> {
    const answer = await request(req);
    const where = shownUrl(req.url);
    if (answer.status !== 200) throw unavailable(`${req.endpoint}-invalid: ${where} answered HTTP ${answer.status}`);
    let value: unknown;
    try {
      value = JSON.parse(answer.body.toString('utf8'));
    } catch {
      throw unavailable(`${req.endpoint}-invalid: ${where} answered something that is not JSON`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw unavailable(`${req.endpoint}-invalid: ${where} answered JSON that is not an object`);
    }
    return value as Record<string, unknown>;
  }

  return {
    route,
    request,
    json,
    close(): void {
      closer.abort();
      egress.destroy();
    },
  };
}
