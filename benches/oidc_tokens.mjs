// Signs access tokens for benches/edge_load.sh, one per line on stdout:
// RS256/ES256 with the OpenID Provider fixture's own signing key (its
// `--state-dir` keys.json, the key it signs with: the first), HS256 with the
// gateway's bench secret. The same compact JWS as the fixture's /test/sign
// (header {alg, kid}, node:crypto, ES256 as IEEE P1363), so thousands of
// distinct tokens need no thousands of HTTP round trips. Node only, no packages.
//
//   node benches/oidc_tokens.mjs --keys DIR/keys.json --iss ISS --aud AUD --count N [--jti PREFIX]
//   node benches/oidc_tokens.mjs --secret S --kid K   --iss ISS --aud AUD --count N [--jti PREFIX]
//   ... [--length L]
//
// Claims: iss, aud, sub, role, email, iat, exp (+1 h) and a distinct jti per token.
// --length L pads the JWS header (an unknown `pad` parameter, which verifiers
// ignore) so each token is about L characters long: a token of one algorithm
// as long as another's, same claims.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import { parseArgs } from 'node:util';

const { values: args } = parseArgs({
  options: {
    keys: { type: 'string' },
    secret: { type: 'string' },
    kid: { type: 'string', default: 'bench' },
    iss: { type: 'string' },
    aud: { type: 'string' },
    count: { type: 'string', default: '1' },
    jti: { type: 'string', default: 'bench' },
    length: { type: 'string', default: '0' },
  },
  strict: true,
});
const count = Number(args.count);
if (!args.iss || !args.aud || !Number.isInteger(count) || count < 1 || (!args.keys === !args.secret)) {
  process.stderr.write('usage: oidc_tokens.mjs (--keys keys.json | --secret S [--kid K]) --iss ISS --aud AUD --count N [--jti PREFIX]\n');
  process.exit(2);
}

let alg;
let kid;
let signer;
if (args.keys) {
  const key = JSON.parse(fs.readFileSync(args.keys, 'utf8')).keys[0];
  const privateKey = crypto.createPrivateKey({ key, format: 'jwk' });
  ({ alg, kid } = key);
  signer = key.kty === 'EC'
    ? (input) => crypto.sign('sha256', input, { key: privateKey, dsaEncoding: 'ieee-p1363' })
    : (input) => crypto.sign('sha256', input, privateKey);
} else {
  alg = 'HS256';
  kid = args.kid;
  signer = (input) => crypto.createHmac('sha256', args.secret).update(input).digest();
}

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
let header = b64({ alg, kid });
const iat = Math.floor(Date.now() / 1000);
const signatureLength = { HS256: 43, RS256: 342, ES256: 86 }[alg] ?? 0;
const claimsOf = (i) => ({
  iss: args.iss,
  aud: args.aud,
  sub: 'bench-user',
  role: 'admin',
  email: 'bench-user@example.com',
  iat,
  exp: iat + 3600,
  jti: `${args.jti}-${i}`,
});
const wanted = Number(args.length);
if (wanted > 0) {
  // base64url of the header grows 4 characters per 3 bytes of padding.
  const bare = `${b64({ alg, kid, pad: '' })}.${b64(claimsOf(0))}.`.length + signatureLength;
  const pad = Math.max(0, Math.round(((wanted - bare) * 3) / 4));
  header = b64({ alg, kid, pad: 'x'.repeat(pad) });
}
const out = [];
for (let i = 0; i < count; i += 1) {
  const input = `${header}.${b64(claimsOf(i))}`;
  out.push(`${input}.${signer(Buffer.from(input)).toString('base64url')}`);
}
process.stdout.write(`${out.join('\n')}\n`);
