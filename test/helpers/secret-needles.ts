/**
 * Needles for the secrets tests: every form a secret could take in a log
 * line by accident (the text, JSON-escaped, \u-escaped, UTF-8 read as
 * latin1, percent- and nginx-escaped, base64 and base64url at all three
 * alignments, hex), the SASL messages holding one, and the head and middle
 * of tokens and keys. `hits` searches raw log text for all of them, plus
 * nets such as the random tag every test secret carries.
 */
export interface Needle {
  readonly label: string;
  readonly text: string;
}

export const b64 = (s: string | Buffer): string => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s).toString('base64');

/** nginx's NGX_ESCAPE_MAIL_AUTH, as popgate sends Auth-User/Auth-Pass: space, "%" and controls as %XX. */
export function nginxEscape(s: string): string {
  return Buffer.from(s, 'utf8')
    .toString('latin1')
    // eslint-disable-next-line no-control-regex -- the controls are what nginx escapes
    .replace(/[\x00-\x20%]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

export interface NeedleSet {
  /** Every needle so far, each text once. */
  readonly list: readonly Needle[];
  /** One needle; texts under 12 characters are refused (they would match by chance). */
  add(label: string, text: string): void;
  /** Every form of a secret string (or a SASL message holding one). */
  secretForms(label: string, s: string): void;
  /** A ticket, token or key: base64 and hex of its head, and of its middle (random bytes) at every base64 alignment. */
  tokenForms(label: string, buf: Buffer): void;
  /** What a PLAIN exchange carries (client to popgate, or popgate to the backend). */
  plainMessageForms(label: string, authzid: string, user: string, password: string): void;
  /** "<source>: <label> <text> in log line: <line>" for every needle (and net) found in `raw`. */
  hits(source: string, raw: string, nets?: readonly Needle[]): string[];
}

export function createNeedleSet(): NeedleSet {
  const list: Needle[] = [];
  const add = (label: string, text: string): void => {
    if (text.length < 12) throw new Error(`needle ${label} too short to be unambiguous: ${JSON.stringify(text)}`);
    if (!list.some((n) => n.text === text)) list.push({ label, text });
  };
  return {
    list,
    add,
    secretForms(label, s) {
      const bytes = Buffer.from(s, 'utf8');
      add(`${label} (text)`, s);
      add(`${label} (JSON-escaped)`, JSON.stringify(s).slice(1, -1));
      add(`${label} (JSON \\u-escaped)`, JSON.stringify(s).slice(1, -1).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
      add(`${label} (UTF-8 read as latin1)`, bytes.toString('latin1'));
      add(`${label} (percent-encoded)`, encodeURIComponent(s));
      add(`${label} (nginx-escaped)`, nginxEscape(s));
      // Base64 at every alignment, without the last (partial) group: found inside any base64 blob holding the secret.
      for (const k of [0, 1, 2]) {
        const whole = bytes.subarray(k).toString('base64');
        const aligned = whole.slice(0, whole.length - 4);
        add(`${label} (base64, offset ${k})`, aligned);
        add(`${label} (base64url, offset ${k})`, aligned.replace(/\+/g, '-').replace(/\//g, '_'));
      }
      add(`${label} (base64, whole)`, bytes.toString('base64'));
      add(`${label} (hex)`, bytes.toString('hex'));
      add(`${label} (HEX)`, bytes.toString('hex').toUpperCase());
    },
    tokenForms(label, buf) {
      if (buf.length < 16) throw new Error(`${label}: only ${buf.length} bytes`);
      add(`${label} (base64, first 40)`, buf.toString('base64').slice(0, 40));
      add(`${label} (hex, first 40)`, buf.toString('hex').slice(0, 40));
      add(`${label} (HEX, first 40)`, buf.toString('hex').slice(0, 40).toUpperCase());
      const mid = Math.min(24, Math.floor(buf.length / 3));
      const len = Math.min(30, Math.floor((buf.length - mid - 2) / 3) * 3);
      if (len >= 12) {
        for (const k of [0, 1, 2]) add(`${label} (base64, middle +${k})`, buf.subarray(mid + k, mid + k + len).toString('base64'));
        add(`${label} (hex, middle)`, buf.subarray(mid, mid + len).toString('hex'));
      }
    },
    plainMessageForms(label, authzid, user, password) {
      const msg = `${authzid}\0${user}\0${password}`;
      add(`${label} PLAIN message (base64)`, b64(msg));
      add(`${label} PLAIN message (JSON-escaped)`, JSON.stringify(msg).slice(1, -1));
    },
    hits(source, raw, nets = []) {
      const lines = raw.split('\n');
      const found: string[] = [];
      for (const n of [...nets, ...list]) {
        const i = lines.findIndex((l) => l.includes(n.text));
        if (i >= 0) found.push(`${source}: ${n.label} ${JSON.stringify(n.text)} in log line: ${lines[i]}`);
      }
      return found;
    },
  };
}
