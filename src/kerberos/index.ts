export * from './types.js';
export * from './kpop-framing.js';
export * from './binding.js';
