/**
 * For the comparison's helper processes: exit on SIGTERM/SIGINT, and never
 * outlive the benchmark, even when it is SIGKILLed (its Cleanup then cannot run).
 */
export function exitWithParent(onTerm: () => void = () => undefined): void {
  process.on('SIGTERM', () => {
    onTerm();
    process.exit(0);
  });
  process.on('SIGINT', () => process.exit(0));
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 1_000).unref();
}
