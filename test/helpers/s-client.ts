/**
 * An interactive `openssl s_client`: the test writes stdin a line at a time
 * and waits for what s_client prints (the server's replies on stdout, its own
 * `RENEGOTIATING` on stderr) before the next step, instead of sleeping.
 *
 * Without -quiet/-ign_eof a line starting with `R` makes s_client renegotiate
 * (TLS 1.2), `Q` quit and `k`/`K` send a key update (TLS 1.3), so POP3
 * commands such as RETR or QUIT need -nocommands.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

export interface SClientExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class SClient {
  /** stdout and stderr interleaved, in the order they arrived. */
  private output = '';
  private exit: SClientExit | undefined;
  private readonly waiters = new Set<() => void>();
  /** Settles when s_client has exited. */
  readonly exited: Promise<SClientExit>;

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    const onOutput = (chunk: Buffer): void => {
      this.output += chunk.toString('latin1');
      this.wake();
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.stdin.on('error', () => undefined); // it may exit before reading everything
    this.exited = new Promise((resolve, reject) => {
      child.once('error', (err) => {
        const code = (err as NodeJS.ErrnoException).code;
        reject(new Error(code === 'ENOENT' ? 'openssl not found: run scripts/setup.sh' : `cannot run openssl: ${err.message}`));
      });
      child.once('close', (code, signal) => {
        this.exit = { code, signal };
        this.wake();
        resolve(this.exit);
      });
    });
    this.exited.catch(() => undefined); // reported through next() / the caller's await
  }

  /** Starts `openssl s_client <args>`. */
  static start(args: readonly string[]): SClient {
    return new SClient(spawn('openssl', ['s_client', ...args], { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  /** Everything printed so far (stdout and stderr). */
  get transcript(): string {
    return this.output;
  }

  /** Where the transcript ends now: pass it to next() to look only at what comes later. */
  get mark(): number {
    return this.output.length;
  }

  /** Types a line (s_client adds CRLF with -crlf). */
  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /**
   * The first match of `pattern` in the transcript from offset `from` on, as
   * soon as it is printed; undefined when s_client exits without printing
   * one. Rejects after `timeoutMs`, quoting the transcript.
   */
  next(pattern: RegExp, from = 0, timeoutMs = 10_000): Promise<string | undefined> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = pattern.exec(this.output.slice(from));
        if (m) resolve(m[0]);
        else if (this.exit) resolve(undefined);
        else return false;
        return true;
      };
      if (check()) return;
      const waiter = (): void => {
        if (!check()) return;
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`s_client printed no ${String(pattern)} after offset ${from} within ${timeoutMs} ms; transcript:\n${this.output}\nits end: ${JSON.stringify(this.output.slice(-300))}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Like next(), but s_client exiting first is an error. */
  async expect(pattern: RegExp, from = 0, timeoutMs = 10_000): Promise<string> {
    const hit = await this.next(pattern, from, timeoutMs);
    if (hit === undefined) throw new Error(`s_client exited before printing ${String(pattern)}; transcript:\n${this.output}`);
    return hit;
  }

  /** Waits for s_client to exit (it does once the server closes), rejecting after `timeoutMs`. */
  async ended(timeoutMs = 10_000): Promise<SClientExit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`s_client still running after ${timeoutMs} ms; transcript:\n${this.output}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (!this.exit) this.child.kill('SIGKILL');
  }

  private wake(): void {
    for (const w of [...this.waiters]) w();
  }
}
