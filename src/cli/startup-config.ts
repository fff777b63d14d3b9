/**
 * The configuration as `serve` loads it, and every problem with it: the one
 * loading path of both `popgate serve` and `popgate check-config`, so the two
 * cannot disagree. Schema (structure, types, `${ENV}`, cross-field rules,
 * `*File` secrets and headers files: config/load.ts), then every other file
 * the config names (server/preflight.ts).
 */
import { inspectConfig, type ConfigIssue, type PopgateConfig } from '../config/index.js';
import { configFiles, preflight, sortByConfigOrder, type CheckedFile, type ConfigFileRef, type PreflightOptions } from '../server/preflight.js';

export interface ConfigCheck {
  /** The configuration, when there is no issue. */
  readonly config: PopgateConfig | undefined;
  /** Every problem: the schema's, or else the files' in config order. */
  readonly issues: readonly ConfigIssue[];
  /** Files found usable, with what was found (none with schemaOnly). */
  readonly checked: readonly CheckedFile[];
  /** Files the config names but serve does not read with these settings. */
  readonly unused: readonly CheckedFile[];
  /** With schemaOnly: every file the config names, none of them read. */
  readonly notChecked: readonly ConfigFileRef[];
  /** Probably wrong but not fatal (a missing PAM service file); none with schemaOnly. */
  readonly warnings: readonly ConfigIssue[];
}

export interface ConfigCheckOptions extends PreflightOptions {
  /**
   * Structure, types, `${ENV}` and cross-field rules only: no file but the
   * config itself is read (secrets become "***"). For CI and for machines
   * without the secrets; never enough to run.
   */
  readonly schemaOnly?: boolean;
  readonly env?: NodeJS.ProcessEnv;
}

/** Loads `file` and checks what it names (see the module comment). Rejects only on an internal error. */
export async function checkConfigFile(file: string, opts: ConfigCheckOptions = {}): Promise<ConfigCheck> {
  const schemaOnly = opts.schemaOnly ?? false;
  const inspected = await inspectConfig(file, opts.env ?? process.env, { readSecrets: !schemaOnly });
  const config = inspected.config;
  if (config === undefined) return { config, issues: inspected.issues, checked: [], unused: [], notChecked: [], warnings: [] };
  if (schemaOnly) {
    return { config: inspected.issues.length === 0 ? config : undefined, issues: inspected.issues, checked: [], unused: [], notChecked: configFiles(config), warnings: [] };
  }
  const report = await preflight(config, opts);
  const issues = sortByConfigOrder(configFiles(config), [...inspected.issues, ...report.issues]);
  // A secret or headers file the loader could not use is not "checked".
  const failed = new Set(inspected.issues.map((i) => i.path));
  return {
    config: issues.length === 0 ? config : undefined,
    issues,
    checked: report.checked.filter((c) => !failed.has(c.path)),
    unused: report.unused,
    notChecked: [],
    warnings: report.warnings,
  };
}
