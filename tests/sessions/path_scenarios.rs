//! Session routes spelled with a trailing slash.

use super::*;

/// One trailing slash names the same session route: `/refresh/`,
/// `/refresh-token/`, `/sessions/`, `/sessions/{id}/`, `/logout/` and
/// `/logout-all/` are answered by the gateway, never proxied with the
/// tokens they carry. `DELETE /sessions/` (no id) is a JSON 405 of the
/// gateway. Paths that are not session routes still reach the backend.
pub fn session_routes_with_one_trailing_slash_are_answered_by_the_gateway(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let laptop = login_ok(port, BOB, Some("Laptop"));
    let phone = login_ok(port, BOB, Some("Phone"));

    let list = expect_ok(
        &with_bearer(port, "GET", "/api/auth/sessions/", &laptop.access),
        200,
    );
    assert_eq!(list["data"]["count"], 2, "{list}");

    let no_id = with_bearer(port, "DELETE", "/api/auth/sessions/", &laptop.access);
    expect_error(&no_id, 405, "method_not_allowed");
    assert_eq!(no_id.header("allow"), Some("GET"), "{}", no_id.body);

    let refreshed = expect_refreshed(
        &refresh_at(port, "/api/auth/refresh/", &laptop.refresh),
        &bob_user(),
    );
    let refreshed = expect_refreshed(
        &refresh_at(port, "/api/auth/refresh-token/", &refreshed.refresh),
        &bob_user(),
    );

    let deleted = with_bearer(
        port,
        "DELETE",
        &format!("/api/auth/sessions/{}/", sid_of(&phone.access)),
        &refreshed.access,
    );
    let body = expect_ok(&deleted, 200);
    assert_eq!(body["message"], "Session revoked successfully", "{body}");
    expect_access_revoked(&api(port, &phone.access));
    upstream_saw(&api(port, &refreshed.access));

    let out = expect_ok(
        &refresh_at(port, "/api/auth/logout/", &refreshed.refresh),
        200,
    );
    assert_eq!(out["message"], "Logged out successfully", "{out}");
    expect_error(
        &refresh(port, &refreshed.refresh),
        401,
        "refresh_token_revoked",
    );
    expect_access_revoked(&api(port, &refreshed.access));

    let tablet = login_ok(port, BOB, Some("Tablet"));
    let all = expect_ok(
        &with_bearer(port, "POST", "/api/auth/logout-all/", &tablet.access),
        200,
    );
    assert_eq!(
        all["message"], "Logged out from all devices successfully",
        "{all}"
    );
    expect_access_revoked(&api(port, &tablet.access));

    // Not a session route: the router's, as before.
    let alice = login_ok(port, ALICE, None);
    let seen = upstream_saw(&with_bearer(port, "GET", "/api/auth/me/", &alice.access));
    assert_eq!(seen["path"], "/api/auth/me/", "{seen}");
    // `//` is read as `/` (one reading of the path), and spelling
    // differences in case too: both are the gateway's session list.
    for path in ["/api/auth/sessions//", "/API/Auth/Sessions"] {
        let listed = expect_ok(&with_bearer(port, "GET", path, &alice.access), 200);
        assert_eq!(listed["data"]["count"], 1, "{path}: {listed}");
    }
}
