/**
 * http(s) URL checks shared by `auth.http` (schema.ts) and `auth.oauth`
 * (oauth.ts): the auth service URL and the forward-proxy setting both use.
 * Its own module because oauth.ts cannot import schema.ts (schema.ts embeds
 * oauth.ts).
 */
import { z } from 'zod';

function hint(text: string): { params: { hint: string } } {
  return { params: { hint: text } };
}

/** An http:// or https:// URL; never echoed in messages (a query string may hold a key). */
export function checkHttpUrl(value: string, ctx: z.RefinementCtx, allowNone = false): void {
  const what = allowNone ? 'must be "none" or an http:// or https:// URL' : 'must be an http:// or https:// URL';
  if (/[\s\0]/.test(value)) {
    ctx.addIssue({ code: 'custom', message: `${what} (without spaces or line breaks)` });
    return;
  }
  if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value)) {
    ctx.addIssue({ code: 'custom', message: `${what} (it has no scheme)` });
    return;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: what, ...hint(allowNone ? 'e.g. http://proxy.example.com:3128' : 'e.g. http://127.0.0.1:9000/auth') });
    return;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    ctx.addIssue({ code: 'custom', message: `${what}, not ${url.protocol}` });
  } else if (url.username !== '' || url.password !== '') {
    ctx.addIssue({
      code: 'custom',
      message: 'must not contain credentials (user:password@)',
      ...hint(allowNone ? 'proxy authentication is not supported; use a proxy that admits popgate by address' : 'send credentials as a static header instead (auth.http.headers or headersFile), e.g. X-Auth-Key or Authorization'),
    });
  } else if (url.hash !== '') {
    ctx.addIssue({ code: 'custom', message: 'must not contain a #fragment' });
  }
}

/**
 * `auth.http.proxy` and `auth.oauth.proxy`: null (the default) takes
 * HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment; "none" never uses a
 * proxy; anything else is the proxy's http:// or https:// URL, without
 * credentials (proxy authentication is not supported).
 */
export const proxySettingSchema = z
  .string()
  .min(1, 'must not be empty')
  .superRefine((v, ctx) => {
    if (v !== 'none') checkHttpUrl(v, ctx, true);
  })
  .nullable()
  .default(null);
