//! `portcullis check`: exit status and file:line:column messages that say
//! what to do, run against the real binary.

mod common;

use std::process::Command;

use common::FIXTURES;

/// Writes `yaml` to a temp file and runs `portcullis check` on it.
fn check(yaml: &str) -> (bool, String, tempfile::TempDir) {
    check_env(yaml, &[])
}

fn check_env(yaml: &str, env: &[(&str, &str)]) -> (bool, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml.replace("{FIXTURES}", FIXTURES)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", path.to_str().unwrap()])
        .envs(env.iter().copied())
        .env_remove("PORTCULLIS_TEST_UNSET")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text, dir)
}

const HEAD: &str = "listeners:\n  proxy: \"127.0.0.1:8080\"\nupstreams:\n  backend:\n    targets: [\"127.0.0.1:3000\"]\n  billing:\n    targets: [\"127.0.0.1:3001\"]\nroutes:\n";

fn assert_reports(text: &str, line_col: &str, message: &str) {
    let wanted = format!("portcullis.yaml:{line_col}: {message}");
    assert!(text.contains(&wanted), "expected `{wanted}` in:\n{text}");
}

#[test]
fn the_shipped_default_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/portcullis.yaml");
    // `make run` makes the demo's certificate in data/tls/ (scripts/dev-tls.sh);
    // here one made for the test stands in for it.
    let tls = tempfile::tempdir().unwrap();
    let (cert, key) = common::pki::Ca::new("Test CA")
        .server(&["localhost"])
        .write(tls.path(), "localhost");
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "-c", path])
        .env("PORTCULLIS_TLS_CERT", &cert)
        .env("PORTCULLIS_TLS_KEY", &key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK (5 routes, 1 upstreams, 1 keys)"));
}

#[test]
fn unknown_upstream_names_the_known_ones() {
    let yaml = format!("{HEAD}  - name: admin\n    match: {{ path_prefix: /admin }}\n    upstream: backnd\n    auth: none\n");
    let (ok, text, _d) = check(&yaml);
    assert!(!ok);
    assert_reports(
        &text,
        "11:15",
        "route `admin` names unknown upstream `backnd` (known: backend, billing)",
    );
}

#[test]
fn duplicate_route_names_point_at_both_definitions() {
    let route = "  - name: api\n    match: { path: /a }\n    upstream: backend\n    auth: none\n";
    let other = "  - name: api\n    match: { path: /b }\n    upstream: backend\n    auth: none\n";
    let (ok, text, _d) = check(&format!("{HEAD}{route}{other}"));
    assert!(!ok);
    assert_reports(
        &text,
        "13:11",
        "duplicate route name `api` (first defined on line 9)",
    );
}

#[test]
fn a_route_shadowed_by_an_earlier_prefix_is_reported() {
    let first =
        "  - name: api\n    match: { path_prefix: /api }\n    upstream: backend\n    auth: none\n";
    let second = "  - name: api-admin\n    match: { path_prefix: /api/admin, methods: [GET] }\n    upstream: billing\n    auth: none\n";
    let (ok, text, _d) = check(&format!("{HEAD}{first}{second}"));
    assert!(!ok);
    assert_reports(
        &text,
        "14:12",
        "route `api-admin` can never match: route `api` (line 9) comes first",
    );
    // The other order is fine.
    let (ok, text, _d) = check(&format!(
        "{HEAD}{}{}",
        second.replace("api-admin", "x"),
        first
    ));
    assert!(ok, "{text}");
}

#[test]
fn an_unparsable_address_says_how_to_write_one() {
    let (ok, text, _d) = check("listeners:\n  proxy: \"127.0.0.1:80x80\"\nroutes: []\n");
    assert!(!ok);
    assert_reports(
        &text,
        "2:10",
        "`127.0.0.1:80x80` is not a listen address: write IP:PORT",
    );
}

#[test]
fn a_missing_env_var_is_reported_where_it_is_referenced() {
    let yaml = "listeners:\n  proxy: \"${PORTCULLIS_TEST_UNSET}\"\nroutes: []\n";
    let (ok, text, _d) = check(yaml);
    assert!(!ok);
    assert_reports(
        &text,
        "2:11",
        "environment variable `PORTCULLIS_TEST_UNSET` is not set",
    );
    // Defaults and set variables resolve.
    let yaml = format!("listeners:\n  proxy: \"${{PORTCULLIS_TEST_ADDR}}\"\n  admin: \"${{PORTCULLIS_TEST_UNSET:-127.0.0.1:9999}}\"\n{}", &HEAD[HEAD.find("upstreams").unwrap()..])
        + "  - name: a\n    match: { path: /a }\n    upstream: backend\n    auth: none\n";
    let (ok, text, _d) = check_env(&yaml, &[("PORTCULLIS_TEST_ADDR", "127.0.0.1:8081")]);
    assert!(ok, "{text}");
}

#[test]
fn unknown_fields_and_bad_yaml_are_reported_with_positions() {
    let (ok, text, _d) =
        check("listeners:\n  proxy: \"127.0.0.1:8080\"\n  admn: \"127.0.0.1:9\"\nroutes: []\n");
    assert!(!ok);
    assert_reports(&text, "3:3", "unknown field `admn`");
    let (ok, text, _d) = check("listeners:\n  proxy: [unclosed\nroutes: []\n");
    assert!(!ok);
    assert!(text.contains("portcullis.yaml:"), "{text}");
}

#[test]
fn key_problems_are_all_reported_at_once() {
    let yaml = "listeners:
  proxy: \"127.0.0.1:8080\"
jwt:
  keys:
    - kid: a
      algorithms: [ES256]
      public_key_file: {FIXTURES}/keys/rsa.pub
    - kid: b
      algorithms: [RS256, none]
      public_key_file: missing.pem
    - kid: c
      algorithms: [HS256]
      public_key_file: {FIXTURES}/keys/rsa.pub
    - kid: a
      algorithms: [HS256]
      secret: x
upstreams:
  u: { targets: [\"127.0.0.1:1\"] }
routes:
  - name: x
    match: { path: /x }
    upstream: u
";
    let (ok, text, _d) = check(yaml);
    assert!(!ok);
    assert_reports(
        &text,
        "6:19",
        "key `a`: the PEM is not a valid EC public key",
    );
    assert_reports(&text, "9:27", "key `b`: algorithm `none` is never accepted");
    assert_reports(&text, "10:24", "cannot read public key file `missing.pem`");
    assert_reports(
        &text,
        "12:19",
        "key `c`: HS256 needs a shared `secret` or `secret_file`, but this key has a PEM key",
    );
    assert_reports(&text, "14:12", "duplicate kid `a` (first on line 5)");
    assert!(text.contains("5 problems"), "{text}");
}

#[test]
fn token_routes_without_keys_are_refused() {
    let yaml =
        format!("{HEAD}  - name: api\n    match: {{ path_prefix: /api }}\n    upstream: backend\n");
    let (ok, text, _d) = check(&yaml);
    assert!(!ok);
    assert_reports(
        &text,
        "9:11",
        "route `api` checks tokens (auth: required is the default) but there is no `jwt` section",
    );
}

#[test]
fn bad_durations_and_targets_explain_the_expected_form() {
    let yaml = "listeners:\n  proxy: \"127.0.0.1:8080\"\nupstreams:\n  u: { targets: [\"nohost\"] }\nroutes:\n  - name: x\n    match: { path: /x }\n    upstream: u\n    auth: none\n";
    let (ok, text, _d) = check(yaml);
    assert!(!ok);
    assert_reports(
        &text,
        "4:18",
        "upstream `u` target `nohost` has no port: write it as `host:port`",
    );
    let (ok, text, _d) = check(&yaml.replace(
        "targets: [\"nohost\"]",
        "targets: [\"127.0.0.1:1\"], read_timeout: 5",
    ));
    assert!(!ok);
    assert!(
        text.contains("duration `5` has no unit: write e.g. `5s`"),
        "{text}"
    );
}

#[test]
fn route_paths_are_read_canonically_with_warnings_and_impossible_ones_are_errors() {
    // Line 9: `match`, line 13: the second route's `match`.
    let yaml = format!(
        "{HEAD}  - name: admin\n    match: {{ path_prefix: \"/api/%61dmin//\" }}\n    upstream: backend\n    auth: none\n  - name: files\n    match: {{ path_prefix: /Files }}\n    upstream: backend\n    auth: none\n    case_sensitive: true\n  - name: lower\n    match: {{ path_prefix: /files }}\n    upstream: billing\n    auth: none\n    case_sensitive: true\n"
    );
    let (ok, text, _d) = check(&yaml);
    assert!(ok, "{text}");
    assert!(
        text.contains("warning: ") && text.contains("portcullis.yaml:10:27: route `admin`: `path_prefix` `/api/%61dmin//` is read as `/api/admin/`"),
        "{text}"
    );
    assert!(
        text.contains("route `lower` overlaps route `files` (line 13) only by letter case"),
        "{text}"
    );

    // Without `case_sensitive`, the second spelling is shadowed: an error.
    let yaml = format!(
        "{HEAD}  - name: files\n    match: {{ path_prefix: /Files }}\n    upstream: backend\n    auth: none\n  - name: lower\n    match: {{ path_prefix: /files/x }}\n    upstream: billing\n    auth: none\n"
    );
    let (ok, text, _d) = check(&yaml);
    assert!(!ok, "{text}");
    assert!(
        text.contains("route `lower` can never match: route `files` (line 9) comes first"),
        "{text}"
    );

    let yaml = format!(
        "{HEAD}  - name: bad\n    match: {{ path_prefix: /api/../admin }}\n    upstream: backend\n    auth: none\n"
    );
    let (ok, text, _d) = check(&yaml);
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "route `bad`: `path_prefix` `/api/../admin` can never match a request: dot segments"
        ),
        "{text}"
    );
}

#[test]
fn request_reading_options_and_client_limits_are_checked() {
    let yaml = format!(
        "requests:\n  path_params: sometimes\n{HEAD}  - name: a\n    match: {{ path: /a }}\n    upstream: backend\n    auth: none\n"
    );
    let (ok, text, _d) = check(&yaml);
    assert!(!ok, "{text}");
    assert!(text.contains("sometimes"), "{text}");
    let yaml = format!(
        "limits:\n  header_read_timeout: 0s\n{HEAD}  - name: a\n    match: {{ path: /a }}\n    upstream: backend\n    auth: none\n"
    );
    let (ok, text, _d) = check(&yaml);
    assert!(!ok, "{text}");
    assert!(text.contains("limits.header_read_timeout is 0"), "{text}");
}

#[test]
fn an_upgrade_socket_in_a_missing_directory_or_too_long_is_reported_where_written() {
    let routes =
        "  - name: api\n    match: { path_prefix: /api }\n    upstream: backend\n    auth: none\n";
    let with = |socket: &str| {
        let head = HEAD.replacen(
            "listeners:\n",
            &format!("listeners:\n  upgrade_socket: \"{socket}\"\n"),
            1,
        );
        check(&format!("{head}{routes}"))
    };
    let (ok, text, _d) = with("no-such-dir/upgrade.sock");
    assert!(!ok);
    assert!(
        text.contains(
            "portcullis.yaml:2:19: listeners.upgrade_socket `no-such-dir/upgrade.sock`: directory "
        ) && text.contains("no-such-dir does not exist"),
        "{text}"
    );
    let long = format!("/tmp/{}.sock", "x".repeat(120));
    let (ok, text, _d) = with(&long);
    assert!(!ok);
    assert!(
        text.contains("portcullis.yaml:2:19: listeners.upgrade_socket `")
            && text.contains("a Unix socket path may have at most 107"),
        "{text}"
    );
    let (ok, text, _d) = with("upgrade.sock");
    assert!(ok, "a socket beside the config is fine:\n{text}");
}

#[test]
fn issuer_problems_are_reported_where_they_are_written() {
    let yaml = "listeners:
  proxy: \"127.0.0.1:8080\"
jwt:
  issuers:
    - issuer: https://idp.example.com
      discovery: true
    - issuer: https://other.example.com
      jwks_uri: http://other.example.com/jwks
      audiences: [api]
    - issuer: https://third.example.com
      discovery: true
      jwks_uri: https://third.example.com/jwks
      audiences: [api]
    - issuer: https://fourth.example.com
      discovery: true
      audiences: [api]
      algorithms: [HS256]
      startup: later
    - issuer: https://idp.example.com
      discovery: true
      audiences: [api]
upstreams:
  u: { targets: [\"127.0.0.1:1\"] }
routes:
  - name: x
    match: { path: /x }
    upstream: u
";
    let (ok, text, _d) = check(yaml);
    assert!(!ok);
    assert_reports(
        &text,
        "5:15",
        "issuer `https://idp.example.com` has no `audiences`",
    );
    assert_reports(
        &text,
        "8:17",
        "issuer `https://other.example.com`: `http://other.example.com/jwks` is plain http",
    );
    assert_reports(&text, "10:15", "issuer `https://third.example.com` needs exactly one of `discovery: true`, `jwks_uri` or `keys`");
    assert_reports(
        &text,
        "17:20",
        "issuer `https://fourth.example.com`: HS256 needs a shared secret",
    );
    assert_reports(
        &text,
        "18:16",
        "`startup: later` is not known: use `wait` or `lazy`",
    );
    assert_reports(
        &text,
        "19:15",
        "issuer `https://idp.example.com` is listed twice (first on line 5)",
    );
}

#[test]
fn a_route_accepting_an_unknown_issuer_names_the_known_ones() {
    let yaml = "listeners:
  proxy: \"127.0.0.1:8080\"
jwt:
  keys:
    - { kid: k, algorithms: [HS256], secret: \"0123456789abcdef0123456789abcdef\" }
  issuers:
    - name: corp
      issuer: https://idp.example.com
      discovery: true
      audiences: [api]
upstreams:
  u: { targets: [\"127.0.0.1:1\"] }
routes:
  - name: x
    match: { path: /x }
    upstream: u
    issuers: [corp, crop]
";
    let (ok, text, _d) = check(yaml);
    assert!(!ok);
    assert_reports(
        &text,
        "17:21",
        "route `x` accepts issuer `crop`, which is not configured (known: corp, jwt.keys)",
    );
}

/// A gateway trusting only an identity provider (no `jwt.keys`), with
/// `sessions` written below line 19.
const IDP_ONLY: &str = "listeners:
  proxy: \"127.0.0.1:8080\"
jwt:
  issuers:
    - name: corp
      issuer: https://idp.example.com
      discovery: true
      audiences: [api]
      logout_client_ids: [gateway]
upstreams:
  u: { targets: [\"127.0.0.1:1\"] }
routes:
  - name: api
    match: { path_prefix: /api }
    upstream: u
  - name: login
    match: { path: /login }
    upstream: u
    auth: none
";

#[test]
fn back_channel_logout_without_a_sessions_section_is_refused_where_logout_client_ids_is_written() {
    let (ok, text, _d) = check(IDP_ONLY);
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "9:26",
        "issuer `https://idp.example.com`: `logout_client_ids` turns on back-channel logout, which keeps its revocations in the session store, but there is no `sessions` section",
    );
    assert!(
        text.contains("add a `sessions` section with just `store`"),
        "{text}"
    );
}

#[test]
fn a_store_only_sessions_section_needs_no_signing_key_nor_refresh_secret() {
    let yaml = format!("{IDP_ONLY}sessions:\n  store: sqlite:data/portcullis.db\n");
    let (ok, text, _d) = check(&yaml);
    assert!(ok, "{text}");
    assert!(!text.contains("warning"), "{text}");
    // With `refresh_secret` the section mints tokens, so it needs the key.
    let yaml = format!("{yaml}  refresh_secret: \"refresh-secret-0123456789-0123456789-abcdef\"\n");
    let (ok, text, _d) = check(&yaml);
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "21:3",
        "`sessions` mints access tokens but no key in `jwt.keys` has `sign: true`",
    );
}

#[test]
fn a_login_block_with_a_store_only_sessions_section_is_refused_at_the_login_block() {
    let yaml = format!(
        "{IDP_ONLY}    login: {{ subject: /user/id }}\nsessions:\n  store: sqlite:data/portcullis.db\n"
    );
    let (ok, text, _d) = check(&yaml);
    assert!(!ok, "{text}");
    assert_reports(
        &text,
        "20:12",
        "route `login` has a `login` block but `sessions` has no `refresh_secret`: logins open sessions, so add `sessions.refresh_secret`",
    );
}

#[test]
fn session_route_options_in_a_store_only_sessions_section_are_warned_about_where_written() {
    let yaml = format!(
        "{IDP_ONLY}sessions:\n  store: sqlite:data/portcullis.db\n  cookie: {{ name: rt }}\n  rotation: false\n  refresh_token_ttl: 5m\n  access_token_ttl: 5m\n  admin_token: \"admin-token-0123456789abcdef\"\n"
    );
    let (ok, text, _d) = check(&yaml);
    assert!(ok, "{text}");
    for (line_col, key) in [
        ("22:11", "cookie"),
        ("23:13", "rotation"),
        ("24:22", "refresh_token_ttl"),
    ] {
        assert_reports(
            &text,
            line_col,
            &format!("`sessions.{key}` has no effect without `refresh_secret`"),
        );
    }
    // Options the store and the admin API use are no warning, nor is the
    // access-token lifetime (it keeps revoked session ids of nodes sharing the store).
    assert!(!text.contains("sessions.admin_token"), "{text}");
    assert!(!text.contains("sessions.access_token_ttl"), "{text}");
}
