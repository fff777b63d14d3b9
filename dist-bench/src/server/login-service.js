import { openBackendSession } from '../backend/client.js';
import { GatewayError, isGatewayError } from '../errors.js';
export function createLoginService(deps) {
    return {
        async login({ credentials, remoteAddress, tls, signal }) {
            let outcome;
            try {
                outcome = await deps.verifier.verify({
                    username: credentials.username,
                    password: credentials.password,
                    mechanism: credentials.mechanism,
                    remoteAddress,
                    tls,
                });
            }
            catch (err) {
                if (isGatewayError(err))
                    throw err;
                throw new GatewayError('VERIFIER_UNAVAILABLE', `${deps.verifier.name}: ${errorText(err)}`, { cause: err });
            }
            if (!outcome.ok)
                throw new GatewayError('AUTH_FAILED', outcome.reason);
            signal.throwIfAborted();
            const login = await deps.resolver.resolve(outcome.user, deps.resolver.mode === 'passthrough' ? credentials.password : undefined);
            const backend = await openBackendSession({ endpoint: deps.endpoint, timeouts: deps.timeouts, login, signal });
            return { user: outcome.user, backend };
        },
    };
}
function errorText(err) {
    return err instanceof Error ? err.message : String(err);
}
//# sourceMappingURL=login-service.js.map