import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';
import { runServe, runCheckConfig } from './serve.js';
import { runHashPassword } from './hash-password.js';
import { runDemo } from '../demo/demo.js';
import { runtimeDescription } from './runtime.js';

const USAGE = `popgate — authenticating POP3 gateway

Usage:
  popgate serve --config FILE        run the gateway (SIGTERM drains, SIGHUP reloads certs and user files)
  popgate check-config FILE          validate a config file and print it with secrets masked
  popgate hash-password [--user NAME] [--algorithm scrypt|bcrypt]
                                     read a password from stdin (or prompt) and print a user-file entry
  popgate demo [--pop3s-port N] [--pop3-port N]
                                     run a self-contained demo: gateway + in-memory POP3 backend
  popgate version                    print popgate's version and the Node.js and OpenSSL it runs on
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve': {
      const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, strict: true });
      if (!values.config) {
        process.stderr.write('popgate serve: --config FILE is required\n');
        return 2;
      }
      return runServe(values.config);
    }
    case 'check-config': {
      const { positionals, values } = parseArgs({
        args: rest,
        options: { config: { type: 'string', short: 'c' } },
        allowPositionals: true,
        strict: true,
      });
      const file = values.config ?? positionals[0];
      if (!file) {
        process.stderr.write('popgate check-config: FILE is required\n');
        return 2;
      }
      return runCheckConfig(file);
    }
    case 'hash-password': {
      const { values } = parseArgs({
        args: rest,
        options: { user: { type: 'string', short: 'u' }, algorithm: { type: 'string', short: 'a', default: 'scrypt' } },
        strict: true,
      });
      if (values.algorithm !== 'scrypt' && values.algorithm !== 'bcrypt') {
        process.stderr.write('popgate hash-password: --algorithm must be scrypt or bcrypt\n');
        return 2;
      }
      return runHashPassword({ user: values.user, algorithm: values.algorithm });
    }
    case 'demo': {
      const { values } = parseArgs({
        args: rest,
        options: {
          'pop3s-port': { type: 'string', default: '10995' },
          'pop3-port': { type: 'string', default: '10110' },
        },
        strict: true,
      });
      return runDemo({ pop3sPort: Number(values['pop3s-port']), pop3Port: Number(values['pop3-port']) });
    }
    case 'version':
    case '--version':
      process.stdout.write(`popgate ${version()} (${runtimeDescription()})\n`);
      return 0;
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      process.stderr.write(`popgate: unknown command '${command}'\n\n${USAGE}`);
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
