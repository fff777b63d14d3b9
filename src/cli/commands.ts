import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { runtimeDescription } from './runtime.js';

// Each command's module is imported when that command runs, so that --help,
// version and usage errors answer without loading the gateway.

const USAGE = `popgate — authenticating POP3 gateway

Usage:
  popgate serve --config FILE        run the gateway (SIGTERM drains, SIGHUP reloads certs and user files)
  popgate check-config [--schema-only] FILE
                                     check a config and every file it names as serve loads them;
                                     print it with secrets masked
  popgate doctor --config FILE [--user NAME] [--hostname NAME]... [--ca-file FILE] [--json]
                                     check what serve depends on (certificates, backends,
                                     auth services, Kerberos) and print a checklist with fixes
  popgate hash-password [--user NAME] [--algorithm scrypt|bcrypt|scram-sha-256] [--iterations N]
                                     read a password from stdin (or prompt) and print a user-file entry
  popgate demo [--pop3s-port N] [--pop3-port N]
                                     run a self-contained demo: gateway + in-memory POP3 backend
  popgate version                    popgate's version and the Node.js and OpenSSL it runs on
  popgate help [COMMAND]             this text, or a command's own (also: popgate COMMAND --help)
`;

/** Each command's own `--help`. */
const HELP: Record<string, string> = {
  serve: `Usage: popgate serve --config FILE

Run the gateway. Before it listens, FILE and every file it names are checked
as \`popgate check-config FILE\` does; if anything is wrong, every problem is
printed (config path and file) and serve exits 78 (EX_CONFIG).
SIGTERM/SIGINT: stop accepting, drain sessions for shutdown.drainTimeout.
SIGHUP: re-read FILE, certificates, the user file, backend secrets, keytab.

Options:
  -c, --config FILE   the configuration file (YAML)
  -h, --help          show this help
`,
  'check-config': `Usage: popgate check-config [--schema-only] FILE

Check FILE as \`popgate serve\` loads it, without listening: the schema
(structure, types, \${ENV} references, cross-field rules), then every file it
names: TLS certificates and keys (parsed, each key matching its certificate,
the TLS context built), client and backend CA files, the user file and the
backend secrets file (parsed: a line serve would skip is a problem), secret
and headers files, krb5.conf, the keytab (a key for every service
principal) and the replay cache directory (writable).
Every problem is printed on stderr, one per line with its config path and
file, and the exit code is 78 (EX_CONFIG). Otherwise: what was checked and
the effective configuration, secrets masked, on stdout; exit 0.

Options:
  --schema-only       check FILE alone: structure, types, \${ENV} references and
                      cross-field rules; no other file is read (for CI, or before
                      the secrets exist); lists the files it did not check
  -c, --config FILE   the same as the FILE argument
  -h, --help          show this help
`,
  doctor: `Usage: popgate doctor --config FILE [--user NAME] [--hostname NAME]... [--ca-file FILE] [--json]

Go further than check-config: after loading FILE and every file it names,
check what serve depends on and print a checklist, one line per check:
✓ passed, ! warning, ✗ failed with its fix in one sentence.
  tls       per listener with a certificate: the chain is complete and
            verifies (system CA store, or --ca-file), the certificate covers
            the names clients use (--hostname, else the hosts of
            kerberos.servicePrincipals), it expires in more than 21 days,
            the key file is not group/world readable
  backend   each backend and routing target: TCP connect, +OK greeting,
            implicit TLS or STLS with serve's certificate checks, QUIT;
            with --user, the internal login for NAME, then QUIT at once
            (nothing in the maildrop is listed, read or deleted)
  services  the auth_http service answers HTTP (no credentials are sent),
            Redis answers PING (throttle store redis, url), the OAuth issuer
            serves discovery and its JWKS
  kerberos  every service principal in the keytab (kvno, enctypes), the KDC
            answers an AS exchange with the keytab key, the clock skew, the
            replay cache directory is writable (MIT klist and kinit)
See docs/doctor.md. Exit 0 when nothing failed, 1 when a check failed, 78
(EX_CONFIG) when FILE does not load, 2 for a usage error.

Options:
  -c, --config FILE   the configuration file (YAML)
  -u, --user NAME     also try the backend login serve would make for NAME
  --hostname NAME     a name clients connect to (repeat for several)
  --ca-file FILE      the CA bundle clients trust, for the listeners' chains
                      (default: the system CA store)
  --json              print the checklist as JSON: [{group, check, status, detail, fix?}]
  -h, --help          show this help
`,
  'hash-password': `Usage: popgate hash-password [--user NAME] [--algorithm scrypt|bcrypt|scram-sha-256] [--iterations N]

Read a password (the first line of stdin, or typed twice at a terminal) and
print its hash, or the user-file line NAME:HASH with --user.

Options:
  -u, --user NAME           print a user-file line for NAME
  -a, --algorithm ALG       scrypt (default), bcrypt ($2y$) or scram-sha-256
                            (Dovecot's {SCRAM-SHA-256} keys: serve AUTH
                            SCRAM-SHA-256 and the password logins alike)
  -i, --iterations N        scram-sha-256 only: PBKDF2 iterations
                            (default 4096, as Dovecot; 4096..10000000)
  -h, --help                show this help
`,
  demo: `Usage: popgate demo [--pop3s-port N] [--pop3-port N]

Run the gateway and an in-memory POP3 backend on loopback with a generated
certificate and demo users, and print commands that log in through it.
Ctrl-C stops it.

Options:
  --pop3s-port N      POP3S port (default 10995; 0 picks a free one)
  --pop3-port N       POP3 + STLS port (default 10110; 0 picks a free one)
  -h, --help          show this help
`,
  version: `Usage: popgate version

Print popgate's version and the Node.js and OpenSSL versions it runs on.
`,
  help: `Usage: popgate help [COMMAND]

Print the list of commands, or COMMAND's own help.
`,
};

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Thrown for a command line that cannot be run: message for stderr, exit 2. */
class UsageError extends Error {}

/** parseArgs with `-h/--help` added; unknown options and bad values become a UsageError. */
function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options: { ...options, ...HELP_OPTION }, allowPositionals, strict: true });
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

function help(command: string): number {
  process.stdout.write(HELP[command] ?? USAGE);
  return 0;
}

async function run(command: string, rest: string[]): Promise<number> {
  switch (command) {
    case 'serve': {
      const { values } = parse(rest, { config: { type: 'string', short: 'c' } });
      if (values.help) return help(command);
      if (!values.config) throw new UsageError('--config FILE is required');
      const { runServe } = await import('./serve.js');
      return runServe(values.config);
    }
    case 'check-config': {
      const { values, positionals } = parse(rest, { config: { type: 'string', short: 'c' }, 'schema-only': { type: 'boolean' } }, true);
      if (values.help) return help(command);
      const files = [...(values.config !== undefined ? [values.config] : []), ...positionals];
      if (files.length !== 1) throw new UsageError(files.length === 0 ? 'FILE is required' : 'give exactly one FILE');
      const { runCheckConfig } = await import('./check-config.js');
      return runCheckConfig(files[0]!, { schemaOnly: values['schema-only'] ?? false });
    }
    case 'doctor': {
      const { values, positionals } = parse(
        rest,
        {
          config: { type: 'string', short: 'c' },
          user: { type: 'string', short: 'u' },
          hostname: { type: 'string', multiple: true },
          'ca-file': { type: 'string' },
          json: { type: 'boolean' },
        },
        true,
      );
      if (values.help) return help(command);
      const files = [...(values.config !== undefined ? [values.config] : []), ...positionals];
      if (files.length !== 1) throw new UsageError(files.length === 0 ? '--config FILE is required' : 'give exactly one FILE');
      const { runDoctor } = await import('./doctor.js');
      return runDoctor(files[0]!, {
        ...(values.user !== undefined ? { user: values.user } : {}),
        hostnames: values.hostname ?? [],
        ...(values['ca-file'] !== undefined ? { caFile: values['ca-file'] } : {}),
        json: values.json ?? false,
      });
    }
    case 'hash-password': {
      const { values } = parse(rest, {
        user: { type: 'string', short: 'u' },
        algorithm: { type: 'string', short: 'a', default: 'scrypt' },
        iterations: { type: 'string', short: 'i' },
      });
      if (values.help) return help(command);
      const { algorithm, iterations } = values;
      if (algorithm !== 'scrypt' && algorithm !== 'bcrypt' && algorithm !== 'scram-sha-256') {
        throw new UsageError('--algorithm must be scrypt, bcrypt or scram-sha-256');
      }
      if (iterations !== undefined && algorithm !== 'scram-sha-256') throw new UsageError('--iterations goes with --algorithm scram-sha-256');
      if (iterations !== undefined && !/^[1-9][0-9]{0,9}$/.test(iterations)) throw new UsageError('--iterations must be a positive integer');
      const { runHashPassword } = await import('./hash-password.js');
      return runHashPassword({ user: values.user, algorithm, ...(iterations !== undefined ? { iterations: Number(iterations) } : {}) });
    }
    case 'demo': {
      const { values } = parse(rest, { 'pop3s-port': { type: 'string', default: '10995' }, 'pop3-port': { type: 'string', default: '10110' } });
      if (values.help) return help(command);
      const { runDemo } = await import('../demo/demo.js');
      return runDemo({ pop3sPort: Number(values['pop3s-port']), pop3Port: Number(values['pop3-port']) });
    }
    case 'version': {
      const { values } = parse(rest, {});
      if (values.help) return help(command);
      process.stdout.write(`popgate ${version()} (${runtimeDescription()})\n`);
      return 0;
    }
    case 'help': {
      const { values, positionals } = parse(rest, {}, true);
      if (values.help) return help(command);
      const [topic] = positionals;
      if (topic !== undefined && HELP[topic] === undefined) throw new UsageError(`no command '${topic}'`);
      return help(topic ?? '');
    }
    default:
      process.stderr.write(`popgate: unknown command '${command}'\n\n${USAGE}`);
      return 2;
  }
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    process.stdout.write(USAGE);
    return 2;
  }
  if (command === '--help' || command === '-h') return help('');
  if (command === '--version') return run('version', rest);
  try {
    return await run(command, rest);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`popgate ${command}: ${err.message}\n\n${HELP[command] ?? USAGE}`);
    return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`popgate: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
