/** The login throttle's public surface (auth.throttle). */
export * from './login-throttle.js';
