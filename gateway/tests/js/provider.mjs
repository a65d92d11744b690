// An OIDC provider process for the gateway's tests: oauth2-mock-server serves discovery
// (/.well-known/openid-configuration) and the JWKS over HTTP; this script only drives it.
//
// stdout: `ready <issuer-url>` once listening, then one line per command answered.
// stdin commands, one per line:
//   token <json>        sign a token: {"kid": "...", "expiresIn": 300, "claims": {...}}
//   rotate <alg> <kid>  add a new signing key (it joins the JWKS; old keys stay published)
//   idtoken <json>      claims merged into every later ID token the authorization-code and
//                       refresh-token grants issue (the browser sign-in tests: a tenant, a
//                       wrong nonce, a past exp; "exp_in": N sets exp N seconds from issue)
//   refresh <ok|refuse> whether the refresh-token grant succeeds or answers invalid_grant
import { createInterface } from 'node:readline';
import { OAuth2Server } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256', { kid: 'rsa-1' });
await server.issuer.keys.generate('ES256', { kid: 'ec-1' });
// argv[2]: the port (0: any free one), so a test can start the provider after the gateway.
await server.start(Number(process.argv[2] ?? 0), '127.0.0.1');
// ID tokens (the grants' only tokens without a scope claim) take these claims.
let idTokenClaims = {};
let refuseRefresh = false;
server.service.on('beforeTokenSigning', (token) => {
  if ('scope' in token.payload) return;
  const { exp_in: expIn, ...claims } = idTokenClaims;
  Object.assign(token.payload, claims);
  if (expIn !== undefined) token.payload.exp = Math.floor(Date.now() / 1000) + expIn;
});
server.service.on('beforeResponse', (response, req) => {
  if (refuseRefresh && req.body?.grant_type === 'refresh_token') {
    response.statusCode = 400;
    response.body = { error: 'invalid_grant', error_description: 'refresh token revoked' };
  }
});
console.log(`ready ${server.issuer.url}`);

for await (const line of createInterface({ input: process.stdin })) {
  const [command, ...rest] = line.trim().split(' ');
  try {
    if (command === 'token') {
      const opts = JSON.parse(rest.join(' '));
      const token = await server.issuer.buildToken({
        kid: opts.kid,
        expiresIn: opts.expiresIn ?? 300,
        scopesOrTransform: (_header, payload) => Object.assign(payload, opts.claims ?? {}),
      });
      console.log(token);
    } else if (command === 'idtoken') {
      idTokenClaims = JSON.parse(rest.join(' '));
      console.log('idtoken set');
    } else if (command === 'refresh') {
      refuseRefresh = rest[0] === 'refuse';
      console.log(`refresh ${rest[0]}`);
    } else if (command === 'rotate') {
      await server.issuer.keys.generate(rest[0], { kid: rest[1] });
      console.log(`rotated ${rest[1]}`);
    } else {
      console.log(`error unknown command ${command}`);
    }
  } catch (e) {
    console.log(`error ${e.message}`);
  }
}
await server.stop();
