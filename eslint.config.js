// The lint that `npm test` runs (scripts/test.sh): a small rule set about
// correctness the compiler does not check. Type-aware (no-floating-promises
// needs the types), so it reads tsconfig.json through the project service.
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: ['dist/**', 'dist-bench/**', 'node_modules/**', '.toolchain/**', 'native/build/**', '**/*.js', '**/*.cjs', '**/*.mjs'],
  },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits loses its rejection: await it, return it, or say `void` on purpose.
      '@typescript-eslint/no-floating-promises': 'error',
      // A promise where a callback's return is ignored (event handlers) loses its rejection too.
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false, attributes: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-explicit-any': 'error',
      // Control characters in a pattern are usually a mistake; where a protocol rule wants them, say so at the line.
      'no-control-regex': 'error',
    },
  },
);
