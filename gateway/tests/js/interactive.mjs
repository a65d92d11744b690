// An OIDC provider with a real login page, for the browser sign-in test: panva's
// oidc-provider (the certified implementation) with its development interactions (a login
// form, then a consent form). Authorization code + PKCE, refresh tokens, RP-initiated logout.
//
//   [PORT=9400] [EXIT_WITH_STDIN=1] node interactive.mjs <redirect_uri> <post_logout_redirect_uri>
//
// stdout: `ready <issuer-url>` once listening. Accounts (any password): alice (tenant acme,
// groups acme-analysts) and bob (tenant globex). Client: portcullis-console / console-secret.
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const [redirectUri, postLogoutUri] = process.argv.slice(2);
if (!redirectUri || !postLogoutUri) {
  console.error('usage: node interactive.mjs <redirect_uri> <post_logout_redirect_uri>');
  process.exit(2);
}

const accounts = {
  alice: { email: 'alice@acme.example', email_verified: true, name: 'Alice Analyst', tenant: 'acme', groups: ['acme', 'acme-analysts'] },
  bob: { email: 'bob@globex.example', email_verified: true, name: 'Bob Builder', tenant: 'globex', groups: ['globex'] },
};

// The port first: the issuer URL names it.
const server = createServer();
await new Promise((resolve) => server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: 'portcullis-console',
    client_secret: 'console-secret',
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [postLogoutUri],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    tenant: ['tenant', 'groups'],
  },
  scopes: ['openid', 'email', 'profile', 'tenant', 'offline_access'],
  // The ID token carries the scopes' claims (the gateway maps them, as it does a bearer's).
  conformIdTokenClaims: false,
  findAccount: async (_ctx, id) => (accounts[id]
    ? { accountId: id, claims: async () => ({ sub: id, ...accounts[id] }) }
    : undefined),
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  pkce: { required: () => true },
  cookies: { keys: ['portcullis-test-only-cookie-key'] },
  ttl: { IdToken: 600, AccessToken: 600, AuthorizationCode: 60, Session: 3600, Interaction: 600, Grant: 3600 },
});
// Unknown logins are refused on the login form rather than failing later.
provider.on('server_error', (_ctx, error) => console.error(`server_error ${error.message}`));
server.on('request', provider.callback());
console.log(`ready ${issuer}`);

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// A test that starts it sets EXIT_WITH_STDIN=1 and holds a pipe: the provider goes when the
// test does. Started by hand (`… &` in a terminal or a script) it does not touch stdin, which
// would stop it (SIGTTIN) or end it at once (/dev/null): stop it with `kill`.
if (process.env.EXIT_WITH_STDIN === '1') {
  process.stdin.on('end', stop);
  process.stdin.resume();
}
