// `node --import ./test/helpers/ts-resolve-hooks.mjs file.ts`: lets Node's own
// type stripping run popgate's sources, whose imports name the compiled
// `.js` files: a relative `x.js` that does not exist resolves to `x.ts`.
import { registerHooks } from 'node:module';

registerHooks({
  resolve(specifier, context, nextResolve) {
    try {
      return nextResolve(specifier, context);
    } catch (err) {
      if (specifier.startsWith('.') && specifier.endsWith('.js')) return nextResolve(`${specifier.slice(0, -3)}.ts`, context);
      throw err;
    }
  },
});
