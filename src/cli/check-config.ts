import { formatConfigIssues, redactConfig } from '../config/index.js';
import { checkConfigFile } from './startup-config.js';

/**
 * `popgate check-config [--schema-only] FILE`: every problem on stderr, one
 * per line with its config path and file, and exit 78 (EX_CONFIG); else
 * warnings (a missing PAM service file) on stderr, and what was checked and
 * the effective config, secrets masked, on stdout.
 */
export async function runCheckConfig(configFile: string, opts: { readonly schemaOnly?: boolean } = {}): Promise<number> {
  const schemaOnly = opts.schemaOnly ?? false;
  const result = await checkConfigFile(configFile, { schemaOnly });
  if (result.issues.length > 0 || result.config === undefined) {
    process.stderr.write(`${formatConfigIssues(result.issues, configFile)}\n`);
    return 78; // EX_CONFIG
  }
  for (const w of result.warnings) {
    process.stderr.write(`${configFile}: warning: ${w.path}: ${w.message}${w.hint ? ` (${w.hint})` : ''}\n`);
  }
  const out: string[] = [];
  if (schemaOnly) {
    out.push(`${configFile}: OK (--schema-only: structure, types, \${ENV} references and cross-field rules; no other file was read)`);
    if (result.notChecked.length > 0) {
      out.push(`not checked (--schema-only), ${count(result.notChecked.length, 'file')}:`);
      for (const f of result.notChecked) out.push(`  ${f.path}: ${f.file} (${f.kind})`);
    }
  } else {
    out.push(`${configFile}: OK`);
    if (result.checked.length > 0) {
      out.push(`checked as serve loads them, ${count(result.checked.length, 'file')}:`);
      for (const c of result.checked) out.push(`  ${c.path}: ${c.file}: ${c.detail}`);
    }
    if (result.unused.length > 0) {
      out.push('named but not used with these settings:');
      for (const u of result.unused) out.push(`  ${u.path}: ${u.file}: ${u.detail}`);
    }
  }
  out.push('effective configuration (secrets masked):', JSON.stringify(redactConfig(result.config), null, 2));
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

function count(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? '' : 's'}`;
}
