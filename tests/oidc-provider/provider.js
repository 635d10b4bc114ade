// An OpenID-certified provider (oidc-provider, pinned in package.json) for
// authgate's logout tests: RP-initiated logout and Back-Channel Logout 1.0.
// Loopback only. The test starts it with:
//   OIDC_PROVIDER_MODULES  the node_modules directory `npm ci` filled
//   PORT                   the loopback port to listen on
//   CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, POST_LOGOUT_REDIRECT_URI,
//   BACKCHANNEL_LOGOUT_URI authgate's registration
// Logins go through the development interactions (any password); every
// user is `<name>@example.com`, in `devops`. Consent is granted for
// authgate up front (a first-party client), so a login is one form.
import { pathToFileURL } from 'node:url';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`provider.js: ${name} is not set`);
    process.exit(2);
  }
  return value;
};

const modules = env('OIDC_PROVIDER_MODULES');
const { default: Provider } = await import(
  pathToFileURL(`${modules}/oidc-provider/lib/index.js`).href
);

const port = Number(env('PORT'));
const issuer = `http://127.0.0.1:${port}`;
const clientId = env('CLIENT_ID');

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: clientId,
      client_secret: env('CLIENT_SECRET'),
      redirect_uris: [env('REDIRECT_URI')],
      post_logout_redirect_uris: [env('POST_LOGOUT_REDIRECT_URI')],
      backchannel_logout_uri: env('BACKCHANNEL_LOGOUT_URI'),
      backchannel_logout_session_required: true,
      grant_types: ['authorization_code'],
      response_types: ['code'],
    },
  ],
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  // authgate reads the identity from the ID token.
  conformIdTokenClaims: false,
  cookies: { keys: ['authgate-test-only-cookie-key'] },
  // The provider refuses to call special-use addresses (SSRF protection);
  // here authgate's back-channel logout endpoint is on loopback on purpose.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return fetch(url, rest);
  },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: id,
      email_verified: true,
      name: id.split('@')[0],
      preferred_username: id.split('@')[0],
      groups: ['devops'],
    }),
  }),
  // A first-party client: every scope and claim asked for is granted.
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid email profile groups');
    grant.addOIDCClaims(['sub', 'email', 'email_verified', 'name', 'preferred_username', 'groups']);
    await grant.save();
    return grant;
  },
});

provider.on('backchannel.error', (ctx, error, client) => {
  console.error(`backchannel logout to ${client.clientId} failed: ${error}`);
});
provider.on('backchannel.success', (ctx, client) => {
  console.log(`backchannel logout to ${client.clientId} delivered`);
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
