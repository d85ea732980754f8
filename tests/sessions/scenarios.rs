//! Scenarios run on both stores: each takes a [`StoreKind`] and runs as
//! `sqlite::<scenario>` and `postgres::<scenario>` (the matrix in `main.rs`).

use std::sync::Barrier;

use super::*;

/// The seed-000 client (`Step 9: Token Management`) unchanged: it keeps
/// the refresh token of its login for every refresh and for logout, so
/// it needs `rotation: false` (DESIGN: "Rotation can be switched off for
/// clients that keep their first token").
pub fn seed_000_client_with_rotation_off_refreshes_lists_and_logs_out_with_its_first_token(
    kind: StoreKind,
) {
    let env = Env::start(
        kind,
        Setup {
            rotation: false,
            ..Setup::default()
        },
    );
    let port = env.port();
    let first = login_ok(port, BOB, Some("Chrome on Windows"));
    let seen = upstream_saw(&api(port, &first.access));
    assert_eq!(seen["headers"]["x-user-id"], "u-2");

    let refreshed = expect_refreshed_full_ttl(&refresh(port, &first.refresh), &bob_user());
    assert_eq!(refreshed.refresh, first.refresh, "rotation is off");
    assert_eq!(
        upstream_saw(&api(port, &refreshed.access))["headers"]["x-user-id"],
        "u-2"
    );
    // The seed client refreshes with the same token again later.
    let again = expect_refreshed(&refresh(port, &first.refresh), &bob_user());

    let list = expect_ok(&list_sessions(port, &again.access), 200);
    assert_eq!(list["data"]["count"], 1, "{list}");
    let session = &list["data"]["sessions"][0];
    assert_eq!(session["current"], true, "{list}");
    assert_eq!(session["deviceInfo"], "Chrome on Windows", "{list}");
    assert_eq!(session["id"].as_str(), Some(sid_of(&first.access).as_str()));

    let out = expect_ok(&logout_with_refresh_token(port, &first.refresh), 200);
    assert_eq!(out["message"], "Logged out successfully", "{out}");

    expect_error(&refresh(port, &first.refresh), 401, "refresh_token_revoked");
    for access in [&first.access, &refreshed.access, &again.access] {
        expect_access_revoked(&api(port, access));
    }
    // Best effort: logging out again is still 200.
    expect_ok(&logout_with_refresh_token(port, &first.refresh), 200);
}

/// The seed-000 flow with rotation on (the default): the client follows
/// the rotated refresh token and logs out with the newest one.
pub fn seed_000_flow_with_rotation_logs_out_with_the_newest_refresh_token(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let first = login_ok(port, BOB, Some("Chrome on Windows"));
    assert_eq!(
        upstream_saw(&api(port, &first.access))["headers"]["x-user-id"],
        "u-2"
    );

    let second = expect_refreshed(&refresh(port, &first.refresh), &bob_user());
    assert_ne!(second.refresh, first.refresh, "rotation is on");
    assert_opaque_refresh_token(&second.refresh);
    let third = expect_refreshed(&refresh(port, &second.refresh), &bob_user());
    assert_ne!(third.refresh, second.refresh);

    let list = expect_ok(&list_sessions(port, &third.access), 200);
    assert_eq!(list["data"]["count"], 1, "{list}");
    assert_eq!(list["data"]["sessions"][0]["current"], true, "{list}");

    let out = expect_ok(&logout_with_refresh_token(port, &third.refresh), 200);
    assert_eq!(out["message"], "Logged out successfully", "{out}");
    expect_error(&refresh(port, &third.refresh), 401, "refresh_token_revoked");
    for access in [&first.access, &second.access, &third.access] {
        expect_access_revoked(&api(port, access));
    }
}

/// The seed-003 client (CareFlow): register, `POST /refresh-token`, read
/// the flat `accessToken` and `user`, log out with the bearer token only.
pub fn seed_003_client_registers_refreshes_at_refresh_token_and_logs_out_with_bearer_only(
    kind: StoreKind,
) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let registered = post_json(
        port,
        "/api/auth/register",
        &[],
        &json!({"name": "John Doe", "email": "john@example.com", "password": "securePassword123"}),
    );
    assert_eq!(registered.status, 201, "{}", registered.body);
    let reg_body = registered.json();
    assert_eq!(reg_body["message"], "User registered successfully");
    assert_eq!(reg_body["user"]["name"], "John Doe");
    let user_id = reg_body["user"]["id"].as_str().expect("user id").to_owned();
    let first = tokens_of_login(&registered);

    // ... and a later login of the same user.
    let login_resp = login(port, "john@example.com", "securePassword123", None);
    let logged_in = tokens_of_login(&login_resp);
    assert_eq!(login_resp.json()["message"], "Login successful");

    let resp = refresh_at(port, "/api/auth/refresh-token", &logged_in.refresh);
    let user = json!({"id": user_id, "role": "patient", "email": "john@example.com"});
    let refreshed = expect_refreshed_full_ttl(&resp, &user);
    // What the seed-003 client reads: the flat fields.
    let body = resp.json();
    assert!(body["accessToken"].is_string(), "{body}");
    assert_eq!(body["user"], user, "{body}");
    assert_eq!(
        upstream_saw(&api(port, &refreshed.access))["headers"]["x-user-id"],
        user_id.as_str()
    );

    // Logout: `Authorization: Bearer <accessToken>`, no body at all.
    let out = with_bearer(port, "POST", "/api/auth/logout", &refreshed.access);
    let out = expect_ok(&out, 200);
    assert_eq!(out["message"], "Logout successful", "{out}");

    // The seed client kept its first refresh token; the rotated one is
    // dead as well: the session ended.
    for token in [&logged_in.refresh, &refreshed.refresh] {
        expect_error(
            &refresh_at(port, "/api/auth/refresh-token", token),
            401,
            "refresh_token_revoked",
        );
    }
    expect_access_revoked(&api(port, &refreshed.access));
    expect_access_revoked(&api(port, &logged_in.access));
    // The registration's own session is another session: untouched.
    expect_refreshed(&refresh(port, &first.refresh), &user);
}

/// Login interception: the backend's answer with the gateway's tokens in
/// place of its own; failures pass through; an answer without the
/// subject is `502 login_unusable`.
pub fn login_interception_swaps_in_session_tokens_and_passes_failures_through(kind: StoreKind) {
    const BROKEN_LOGIN: &str = r#"  - name: broken-login
    match: { path: /broken/login, methods: [POST] }
    upstream: main
    auth: none
    strip_prefix: /broken
    add_prefix: /api/auth
    login:
      subject: /user/no_such_field
"#;
    let env = Env::start(
        kind,
        Setup {
            routes: BROKEN_LOGIN,
            ..Setup::default()
        },
    );
    let port = env.port();

    let wrong = login(port, BOB, "wrong-password", None);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(
        wrong.json(),
        json!({"message": "Invalid email or password"}),
        "a failed login must pass through untouched"
    );
    expect_metric(&env.gw, CREATED_TOTAL, "", 0.0);

    let resp = login(port, ALICE, PASSWORD, Some("Firefox on Linux"));
    let tokens = tokens_of_login(&resp);
    let body = resp.json();
    assert_eq!(body["message"], "Login successful", "{body}");
    assert_eq!(
        body["user"],
        json!({"id": "u-1", "name": "Alice Admin", "email": ALICE, "role": "admin"}),
        "the backend's user object passes through"
    );
    assert!(!resp.body.contains("backend-issued"), "{}", resp.body);

    let key = jsonwebtoken::DecodingKey::from_secret(HS_SECRET.as_bytes());
    let claims = verify_access(&tokens.access, &key, jsonwebtoken::Algorithm::HS256);
    assert_eq!(header_of(&tokens.access)["kid"], "hs");
    assert_eq!(claims["sub"], "u-1", "{claims}");
    assert_eq!(claims["role"], "admin", "{claims}");
    assert_eq!(claims["email"], ALICE, "{claims}");
    assert_eq!(claims["iss"], "test-issuer", "{claims}");
    let sid = claims["sid"].as_str().expect("sid claim");
    uuid::Uuid::parse_str(sid).unwrap_or_else(|e| panic!("sid {sid} is not a UUID: {e}"));
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{claims}"
    );
    let (iat, exp) = (
        claims["iat"].as_i64().expect("iat"),
        claims["exp"].as_i64().expect("exp"),
    );
    assert_eq!(
        exp - iat,
        ACCESS_TTL_SECS,
        "default access_token_ttl is 15m"
    );
    assert_opaque_refresh_token(&tokens.refresh);
    assert_eq!(
        upstream_saw(&api(port, &tokens.access))["headers"]["x-user-id"],
        "u-1"
    );

    // A second login is a second session with its own tokens.
    let other = login_ok(port, ALICE, None);
    assert_ne!(other.refresh, tokens.refresh);
    assert_ne!(sid_of(&other.access), sid);
    expect_metric(&env.gw, CREATED_TOTAL, "", 2.0);

    // A 2xx answer without the subject: 502, the backend's body is not passed on.
    let broken = post_json(
        port,
        "/broken/login",
        &[],
        &json!({"email": BOB, "password": PASSWORD}),
    );
    expect_error(&broken, 502, "login_unusable");
    assert!(!broken.body.contains("backend-issued"), "{}", broken.body);
    assert!(!broken.body.contains("Bob Patient"), "{}", broken.body);
    expect_metric(&env.gw, CREATED_TOTAL, "", 2.0);
}

/// The login answer carries fresh tokens: it must not be cached either
/// (brief: `Cache-Control: no-store` on every /api/auth answer; the README
/// says it of the routes the gateway answers itself).
pub fn login_answers_with_session_tokens_are_not_cacheable(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let resp = login(env.port(), BOB, PASSWORD, None);
    tokens_of_login(&resp);
    let cache = resp.header("cache-control").unwrap_or("");
    assert!(
        cache.to_ascii_lowercase().contains("no-store"),
        "login answer with tokens lacks Cache-Control: no-store (got {cache:?})"
    );
}

/// `GET /sessions`: every session of the caller with its metadata, the
/// caller's own marked `current`; other subjects' sessions are not shown.
pub fn sessions_list_shows_each_device_with_its_metadata_and_marks_the_current_one(
    kind: StoreKind,
) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let chrome = login_ok(port, BOB, Some("Chrome on Windows"));
    // No deviceInfo in the body: the User-Agent is the device info.
    let iphone = tokens_of_login(&login_with_agent(
        port,
        BOB,
        PASSWORD,
        None,
        "Safari/17.0 (iPhone)",
    ));
    let _alice = login_ok(port, ALICE, Some("Alice's laptop"));

    let list = expect_ok(&list_sessions(port, &chrome.access), 200);
    let data = &list["data"];
    assert_eq!(data["count"], 2, "{list}");
    let sessions = data["sessions"].as_array().expect("sessions array");
    assert_eq!(sessions.len(), 2, "{list}");
    let by_id = |sid: &str| -> &Value {
        sessions
            .iter()
            .find(|s| s["id"] == sid)
            .unwrap_or_else(|| panic!("session {sid} not listed: {list}"))
    };
    let c = by_id(&sid_of(&chrome.access));
    let i = by_id(&sid_of(&iphone.access));
    assert_eq!(c["deviceInfo"], "Chrome on Windows", "{list}");
    assert_eq!(c["userAgent"], USER_AGENT, "{list}");
    assert_eq!(i["deviceInfo"], "Safari/17.0 (iPhone)", "{list}");
    assert_eq!(i["userAgent"], "Safari/17.0 (iPhone)", "{list}");
    assert_eq!(
        (&c["current"], &i["current"]),
        (&json!(true), &json!(false))
    );
    for s in [c, i] {
        assert_eq!(s["ip"], "127.0.0.1", "{s}");
        uuid::Uuid::parse_str(s["id"].as_str().expect("id")).expect("id is a UUID");
        // Timestamps as the seed lists them: ISO 8601 strings.
        for field in ["createdAt", "lastUsedAt", "expiresAt"] {
            let t = s[field]
                .as_str()
                .unwrap_or_else(|| panic!("{field} is not a string: {s}"));
            assert!(
                t.len() >= 20 && t.as_bytes()[4] == b'-' && t.contains('T'),
                "{field} is not an ISO 8601 timestamp: {t}"
            );
        }
        assert!(
            s["expiresAt"].as_str() > s["createdAt"].as_str(),
            "expiresAt after createdAt: {s}"
        );
    }

    let from_iphone = expect_ok(&list_sessions(port, &iphone.access), 200);
    let current: Vec<&Value> = from_iphone["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter(|s| s["current"] == true)
        .collect();
    assert_eq!(current.len(), 1, "{from_iphone}");
    assert_eq!(
        current[0]["id"].as_str(),
        Some(sid_of(&iphone.access).as_str())
    );
}

/// Seed-000 test 4: two devices, `POST /logout-all` ends both, their
/// refresh and access tokens at once; another subject is untouched.
pub fn logout_all_revokes_every_device_of_the_subject_and_their_access_tokens(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let laptop = login_ok(port, BOB, Some("Chrome on Windows"));
    let phone = login_ok(port, BOB, Some("Safari on iPhone"));
    let alice = login_ok(port, ALICE, Some("Alice's laptop"));
    for t in [&laptop, &phone, &alice] {
        upstream_saw(&api(port, &t.access));
    }

    let out = expect_ok(
        &with_bearer(port, "POST", "/api/auth/logout-all", &laptop.access),
        200,
    );
    assert_eq!(out["data"]["revoked"], 2, "{out}");

    for t in [&laptop, &phone] {
        expect_error(&refresh(port, &t.refresh), 401, "refresh_token_revoked");
        expect_access_revoked(&api(port, &t.access));
    }
    expect_access_revoked(&list_sessions(port, &phone.access));
    let still = expect_refreshed(&refresh(port, &alice.refresh), &alice_user());
    upstream_saw(&api(port, &alice.access));
    upstream_saw(&api(port, &still.access));

    // Revocation is per session, not per subject: logging in again works.
    let again = login_ok(port, BOB, Some("Chrome on Windows"));
    upstream_saw(&api(port, &again.access));
    expect_refreshed(&refresh(port, &again.refresh), &bob_user());

    expect_metric(&env.gw, LOGOUT_TOTAL, r#"scope="all""#, 1.0);
    expect_metric(&env.gw, REVOKED_TOTAL, r#"reason="logout_all""#, 2.0);
}

/// Seed-000 test 5: `DELETE /sessions/{id}` ends only that session.
pub fn deleting_one_session_revokes_only_that_session(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let keep = login_ok(port, BOB, Some("Chrome on Windows"));
    let lost = login_ok(port, BOB, Some("Stolen phone"));
    let list = expect_ok(&list_sessions(port, &keep.access), 200);
    let lost_id = list["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .find(|s| s["deviceInfo"] == "Stolen phone")
        .and_then(|s| s["id"].as_str())
        .unwrap_or_else(|| panic!("phone session not listed: {list}"))
        .to_owned();
    assert_eq!(lost_id, sid_of(&lost.access));

    let resp = with_bearer(
        port,
        "DELETE",
        &format!("/api/auth/sessions/{lost_id}"),
        &keep.access,
    );
    let body = expect_ok(&resp, 200);
    assert_eq!(body["message"], "Session revoked successfully", "{body}");

    expect_error(&refresh(port, &lost.refresh), 401, "refresh_token_revoked");
    expect_access_revoked(&api(port, &lost.access));

    upstream_saw(&api(port, &keep.access));
    let kept = expect_refreshed(&refresh(port, &keep.refresh), &bob_user());
    upstream_saw(&api(port, &kept.access));
    let after = expect_ok(&list_sessions(port, &kept.access), 200);
    assert_eq!(after["data"]["count"], 1, "{after}");
    assert_eq!(
        after["data"]["sessions"][0]["id"].as_str(),
        Some(sid_of(&keep.access).as_str())
    );

    expect_metric(&env.gw, LOGOUT_TOTAL, r#"scope="single""#, 1.0);
    expect_metric(&env.gw, REVOKED_TOTAL, r#"reason="session_deleted""#, 1.0);
}

/// No existence oracle: another user's session id answers exactly like an
/// unknown one (404), and a non-UUID is 400.
pub fn deleting_another_users_session_is_404_like_an_unknown_id_and_a_non_uuid_is_400(
    kind: StoreKind,
) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let alice = login_ok(port, ALICE, Some("Alice's laptop"));
    let bob = login_ok(port, BOB, Some("Bob's phone"));
    let alice_sid = sid_of(&alice.access);

    let foreign = with_bearer(
        port,
        "DELETE",
        &format!("/api/auth/sessions/{alice_sid}"),
        &bob.access,
    );
    let foreign_body = expect_error(&foreign, 404, "session_not_found");
    let unknown = with_bearer(
        port,
        "DELETE",
        &format!("/api/auth/sessions/{}", uuid::Uuid::new_v4()),
        &bob.access,
    );
    let unknown_body = expect_error(&unknown, 404, "session_not_found");
    assert_eq!(
        foreign_body, unknown_body,
        "someone else's session must look exactly like an unknown one"
    );

    for bad in [
        "not-a-uuid",
        "12345",
        "0b5e6f7a-zzzz-4d2c-9e8f-0123456789ab",
    ] {
        let resp = with_bearer(
            port,
            "DELETE",
            &format!("/api/auth/sessions/{bad}"),
            &bob.access,
        );
        expect_error(&resp, 400, "invalid_session_id");
    }
    let anonymous = request(
        port,
        "DELETE",
        &format!("/api/auth/sessions/{alice_sid}"),
        &[],
        None,
    );
    expect_error(&anonymous, 401, "missing_token");

    // Alice's session survived all of it.
    upstream_saw(&api(port, &alice.access));
    expect_refreshed(&refresh(port, &alice.refresh), &alice_user());
    expect_metric(&env.gw, LOGOUT_TOTAL, r#"scope="single""#, 0.0);
}

/// Bearer session routes authenticate like proxied routes.
pub fn bearer_session_routes_reject_missing_bad_and_expired_access_tokens(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let bob = login_ok(port, BOB, None);
    let mut expired = claims_of(&bob.access);
    let now = expired["iat"].as_i64().expect("iat");
    expired["iat"] = json!(now - 3600);
    expired["exp"] = json!(now - 1800);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs".into());
    let expired = jsonwebtoken::encode(
        &header,
        &expired,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
    .expect("sign");

    for (method, path) in [
        ("GET", "/api/auth/sessions".to_owned()),
        ("POST", "/api/auth/logout-all".to_owned()),
        (
            "DELETE",
            format!("/api/auth/sessions/{}", sid_of(&bob.access)),
        ),
    ] {
        let none = request(port, method, &path, &[], None);
        expect_error(&none, 401, "missing_token");
        assert!(none.header("www-authenticate").is_some(), "{method} {path}");
        let garbage = with_bearer(port, method, &path, "not.a.token");
        expect_error(&garbage, 401, "invalid_token");
        let old = with_bearer(port, method, &path, &expired);
        expect_error(&old, 401, "token_expired");
    }
    // None of that touched the session.
    expect_ok(&list_sessions(port, &bob.access), 200);
}

/// Rotation with a 1 s grace: the rotated token keeps working within the
/// grace window (concurrent tabs), and after it revokes the whole session.
pub fn refresh_with_rotated_token_after_grace_revokes_session(kind: StoreKind) {
    let grace = Duration::from_secs(1);
    let env = Env::start(
        kind,
        Setup {
            reuse_grace: "1s",
            ..Setup::default()
        },
    );
    let port = env.port();
    let first = login_ok(port, BOB, Some("tab 1"));
    let rotated_no_earlier_than = Instant::now();
    let second = expect_refreshed(&refresh(port, &first.refresh), &bob_user());
    assert_ne!(second.refresh, first.refresh, "rotation is on by default");
    upstream_saw(&api(port, &second.access));

    // Within the grace window: the other tab's replay still works.
    let sibling = expect_refreshed(&refresh(port, &first.refresh), &bob_user());
    assert_ne!(sibling.refresh, first.refresh);
    upstream_saw(&api(port, &sibling.access));
    expect_metric(&env.gw, REFRESH_TOTAL, r#"result="grace_replay""#, 1.0);
    expect_metric(&env.gw, REUSE_TOTAL, "", 0.0);

    // Keep replaying until the grace window closes.
    let reused = poll(
        "the rotated refresh token to stop working",
        grace + Duration::from_secs(5),
        Duration::from_millis(50),
        || {
            let resp = refresh(port, &first.refresh);
            (resp.status != 200).then_some(resp)
        },
    );
    let closed_after = rotated_no_earlier_than.elapsed();
    let body = expect_error(&reused, 401, "refresh_token_reused");
    assert!(
        closed_after + Duration::from_millis(50) >= grace,
        "the rotated token stopped working after {closed_after:?}, before the {grace:?} grace: {body}"
    );

    // The whole session is revoked: the newest tokens die too.
    for t in [&second, &sibling] {
        expect_error(&refresh(port, &t.refresh), 401, "refresh_token_revoked");
        expect_access_revoked(&api(port, &t.access));
    }
    expect_access_revoked(&api(port, &first.access));
    expect_metric(&env.gw, REUSE_TOTAL, "", 1.0);
    expect_metric(&env.gw, REFRESH_TOTAL, r#"result="reused""#, 1.0);
    expect_metric(&env.gw, REVOKED_TOTAL, r#"reason="reuse_detected""#, 1.0);
}

/// `rotation: false`: the same refresh token comes back every time and
/// keeps working.
pub fn refresh_with_rotation_off_returns_the_same_refresh_token(kind: StoreKind) {
    let env = Env::start(
        kind,
        Setup {
            rotation: false,
            reuse_grace: "0s",
            ..Setup::default()
        },
    );
    let port = env.port();
    let first = login_ok(port, BOB, None);
    let mut jtis = vec![claims_of(&first.access)["jti"].clone()];
    for _ in 0..3 {
        let t = expect_refreshed(&refresh(port, &first.refresh), &bob_user());
        assert_eq!(t.refresh, first.refresh, "rotation is off");
        upstream_saw(&api(port, &t.access));
        let jti = claims_of(&t.access)["jti"].clone();
        assert!(
            !jtis.contains(&jti),
            "every access token is new (jti {jti})"
        );
        jtis.push(jti);
    }
    expect_metric(&env.gw, REFRESH_TOTAL, r#"result="ok""#, 3.0);
    expect_metric(&env.gw, REUSE_TOTAL, "", 0.0);
}

/// 8 simultaneous refreshes of one token with `reuse_grace: 0s`: exactly
/// one wins the rotation; every other presentation is of a rotated token
/// after the (empty) grace window, so the session is revoked once by
/// reuse detection — the winner's fresh tokens included. No lost update:
/// there is never a second 200.
pub fn concurrent_refreshes_without_grace_rotate_once_and_revoke_the_session_on_reuse(
    kind: StoreKind,
) {
    const RACERS: usize = 8;
    let env = Env::start(
        kind,
        Setup {
            reuse_grace: "0s",
            ..Setup::default()
        },
    );
    let port = env.port();
    let first = login_ok(port, BOB, None);
    let answers = race(port, &first.refresh, RACERS);

    let winners: Vec<&Response> = answers.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one refresh may rotate: {:#?}",
        statuses(&answers)
    );
    let mut reused = 0;
    for r in answers.iter().filter(|r| r.status != 200) {
        let code = r.json()["error"].as_str().unwrap_or("").to_owned();
        assert!(
            r.status == 401 && (code == "refresh_token_reused" || code == "refresh_token_revoked"),
            "a loser must be 401 reused/revoked: {:#?}",
            statuses(&answers)
        );
        assert_session_answer(r);
        reused += usize::from(code == "refresh_token_reused");
    }
    assert!(
        reused >= 1,
        "the first replay is reuse: {:#?}",
        statuses(&answers)
    );

    let winner = expect_refreshed(winners[0], &bob_user());
    expect_error(
        &refresh(port, &winner.refresh),
        401,
        "refresh_token_revoked",
    );
    expect_access_revoked(&api(port, &winner.access));
    expect_access_revoked(&api(port, &first.access));

    expect_metric(&env.gw, REFRESH_TOTAL, r#"result="ok""#, 1.0);
    expect_metric(&env.gw, REVOKED_TOTAL, r#"reason="reuse_detected""#, 1.0);
    expect_metric(&env.gw, REUSE_TOTAL, "", reused as f64);
}

/// 8 simultaneous refreshes of one token within a 30 s grace window: all
/// succeed, exactly one as the rotation (`ok`) and the rest as grace
/// replays; every answer's refresh token is distinct and was stored (each
/// works afterwards), and it is all still one session.
pub fn concurrent_refreshes_within_grace_all_succeed_with_distinct_working_tokens(kind: StoreKind) {
    const RACERS: usize = 8;
    let env = Env::start(
        kind,
        Setup {
            reuse_grace: "30s",
            ..Setup::default()
        },
    );
    let port = env.port();
    let first = login_ok(port, BOB, None);
    let answers = race(port, &first.refresh, RACERS);
    let tokens: Vec<Tokens> = answers
        .iter()
        .map(|r| expect_refreshed(r, &bob_user()))
        .collect();
    let mut refresh_tokens: Vec<&str> = tokens.iter().map(|t| t.refresh.as_str()).collect();
    refresh_tokens.sort_unstable();
    refresh_tokens.dedup();
    assert_eq!(
        refresh_tokens.len(),
        RACERS,
        "every racer gets a refresh token of its own"
    );
    assert!(!refresh_tokens.contains(&first.refresh.as_str()));
    expect_metric(&env.gw, REFRESH_TOTAL, r#"result="ok""#, 1.0);
    expect_metric(
        &env.gw,
        REFRESH_TOTAL,
        r#"result="grace_replay""#,
        (RACERS - 1) as f64,
    );

    for t in &tokens {
        upstream_saw(&api(port, &t.access));
        let next = expect_refreshed(&refresh(port, &t.refresh), &bob_user());
        assert_ne!(next.refresh, t.refresh);
    }
    let list = expect_ok(&list_sessions(port, &tokens[0].access), 200);
    assert_eq!(list["data"]["count"], 1, "{list}");
    expect_metric(&env.gw, REUSE_TOTAL, "", 0.0);
    expect_metric(&env.gw, REVOKED_TOTAL, r#"reason="reuse_detected""#, 0.0);
}

/// `refresh_token_ttl: 2s` is the session's absolute lifetime: refreshing
/// (and rotating) does not extend it; afterwards `401 refresh_token_expired`.
pub fn refresh_after_the_session_lifetime_is_refresh_token_expired(kind: StoreKind) {
    let ttl = Duration::from_secs(2);
    let env = Env::start(
        kind,
        Setup {
            refresh_token_ttl: Some("2s"),
            ..Setup::default()
        },
    );
    let port = env.port();
    let created_no_earlier_than = Instant::now();
    let mut current = login_ok(port, BOB, None);
    let mut refreshes = 0;
    let expired = poll(
        "the session to expire",
        ttl + Duration::from_secs(6),
        Duration::from_millis(100),
        || {
            let resp = refresh(port, &current.refresh);
            if resp.status == 200 {
                current = expect_refreshed(&resp, &bob_user());
                refreshes += 1;
                None
            } else {
                Some(resp)
            }
        },
    );
    let lived = created_no_earlier_than.elapsed();
    let body = expect_error(&expired, 401, "refresh_token_expired");
    assert_eq!(
        body["message"],
        "Refresh token has expired. Please login again."
    );
    assert!(
        lived + Duration::from_millis(50) >= ttl,
        "session ended after {lived:?}, before its {ttl:?} lifetime"
    );
    assert!(refreshes >= 1, "the token worked before it expired");
    expect_metric(&env.gw, REFRESH_TOTAL, r#"result="expired""#, 1.0);
}

/// Bad requests to `/refresh` get precise errors, never a 5xx, and leave
/// the gateway working.
pub fn malformed_refresh_requests_get_precise_client_errors(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let tokens = login_ok(port, BOB, None);
    let json_body = |b: &str| {
        send(
            port,
            "POST",
            "/api/auth/refresh",
            &[],
            Some(("application/json", b)),
        )
    };

    for not_an_object in [
        "not json",
        "{\"refreshToken\":",
        "[]",
        "[\"abc\"]",
        "\"abc\"",
        "42",
    ] {
        let resp = json_body(not_an_object);
        assert_eq!(resp.status, 400, "body {not_an_object:?}: {}", resp.body);
        expect_error(&resp, 400, "invalid_json");
    }
    expect_error(&json_body(r#"{"refreshToken": 42}"#), 400, "invalid_field");
    expect_error(
        &json_body(r#"{"refreshToken": {"t": "x"}}"#),
        400,
        "invalid_field",
    );

    let required = expect_error(&json_body("{}"), 400, "refresh_token_required");
    assert_eq!(required["message"], "Refresh token is required");
    expect_error(&json_body(""), 400, "refresh_token_required");
    let no_body = send(port, "POST", "/api/auth/refresh", &[], None);
    expect_error(&no_body, 400, "refresh_token_required");

    let big = format!(r#"{{"refreshToken": "{}"}}"#, "a".repeat(5 * 1024));
    expect_error(&json_body(&big), 413, "body_too_large");
    // Chunked, so the size is only known while reading.
    let chunk = "a".repeat(1024);
    let mut chunked = format!(
        "POST /api/auth/refresh HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    chunked.push_str(&format!(
        "10\r\n{{\"refreshToken\":\r\n{:x}\r\n\"{chunk}\r\n",
        chunk.len() + 1
    ));
    for _ in 0..6 {
        chunked.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    chunked.push_str("2\r\n\"}\r\n0\r\n\r\n");
    expect_error(&raw(port, chunked.as_bytes()), 413, "body_too_large");

    let body = json!({"refreshToken": tokens.refresh}).to_string();
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let resp = send(
            port,
            "POST",
            "/api/auth/refresh",
            &[],
            Some((content_type, &body)),
        );
        expect_error(&resp, 415, "unsupported_media_type");
    }

    for path in [
        "/api/auth/refresh",
        "/api/auth/refresh-token",
        "/api/auth/logout",
    ] {
        let resp = request(port, "GET", path, &[], None);
        expect_error(&resp, 405, "method_not_allowed");
        let allow = resp.header("allow").unwrap_or("");
        assert!(allow.contains("POST"), "{path}: Allow {allow:?}");
    }
    expect_error(
        &send(
            port,
            "POST",
            "/api/auth/refresh-token",
            &[],
            Some(("application/json", "[]")),
        ),
        400,
        "invalid_json",
    );

    // The token survived all of it, and a charset parameter is still JSON.
    let ok = send(
        port,
        "POST",
        "/api/auth/refresh",
        &[],
        Some(("application/json; charset=utf-8", &body)),
    );
    expect_refreshed(&ok, &bob_user());
    assert!(metric_now(&env.gw, REFRESH_TOTAL, r#"result="bad_request""#) >= 1.0);
}

/// Unknown, forged or foreign refresh tokens: `401 invalid_refresh_token`.
pub fn unknown_or_forged_refresh_tokens_are_invalid(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let tokens = login_ok(port, BOB, None);
    let forged_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 48])
    };
    let candidates = [
        "not-a-real-token".to_owned(),
        tampered(&tokens.refresh),
        forged_b64,
        tokens.access.clone(),
        "backend-issued-refresh-token".to_owned(),
    ];
    for candidate in &candidates {
        let body = expect_error(&refresh(port, candidate), 401, "invalid_refresh_token");
        assert_eq!(
            body["message"], "Invalid or expired refresh token",
            "{candidate}"
        );
    }
    expect_metric(
        &env.gw,
        REFRESH_TOTAL,
        r#"result="invalid""#,
        candidates.len() as f64,
    );
    expect_refreshed(&refresh(port, &tokens.refresh), &bob_user());
}

/// `rate_limit.per_ip: 3`: the fourth refresh/refresh-token/logout attempt
/// in the window is `429` with `Retry-After`; bearer routes are not limited.
pub fn refresh_attempts_above_the_per_ip_limit_get_429_with_retry_after(kind: StoreKind) {
    let env = Env::start(
        kind,
        Setup {
            per_ip: 3,
            ..Setup::default()
        },
    );
    let port = env.port();
    let mut current = login_ok(port, BOB, None);
    for _ in 0..3 {
        current = expect_refreshed(&refresh(port, &current.refresh), &bob_user());
    }
    for resp in [
        refresh(port, &current.refresh),
        refresh_at(port, "/api/auth/refresh-token", &current.refresh),
        logout_with_refresh_token(port, &current.refresh),
    ] {
        expect_error(&resp, 429, "rate_limited");
        let retry = resp.header("retry-after").unwrap_or("");
        let secs: u64 = retry
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After is not whole seconds: {retry:?}"));
        assert!(
            (1..=60).contains(&secs),
            "Retry-After {secs} outside the 1m window"
        );
    }
    // Not a refresh/logout attempt: not limited, and the session is intact.
    expect_ok(&list_sessions(port, &current.access), 200);
    upstream_saw(&api(port, &current.access));
    assert!(metric_now(&env.gw, REFRESH_TOTAL, r#"result="rate_limited""#) >= 2.0);
}

/// The client IP is the connection's address: a client-sent
/// `X-Forwarded-For` (which the gateway replaces, README) neither
/// escapes the per-IP limit nor becomes the session's `ip`.
pub fn client_sent_forwarded_for_neither_escapes_the_ip_limit_nor_sets_the_session_ip(
    kind: StoreKind,
) {
    let env = Env::start(
        kind,
        Setup {
            per_ip: 3,
            ..Setup::default()
        },
    );
    let port = env.port();
    let spoofed = post_json(
        port,
        "/api/auth/login",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Real-IP", "203.0.113.9"),
        ],
        &json!({"email": BOB, "password": PASSWORD, "deviceInfo": "spoofer"}),
    );
    let mut current = tokens_of_login(&spoofed);
    let list = expect_ok(&list_sessions(port, &current.access), 200);
    assert_eq!(list["data"]["sessions"][0]["ip"], "127.0.0.1", "{list}");

    for i in 0..3 {
        let forwarded = format!("198.51.100.{i}");
        let resp = post_json(
            port,
            "/api/auth/refresh",
            &[("X-Forwarded-For", &forwarded)],
            &json!({"refreshToken": current.refresh}),
        );
        current = expect_refreshed(&resp, &bob_user());
    }
    let resp = post_json(
        port,
        "/api/auth/refresh",
        &[("X-Forwarded-For", "198.51.100.99")],
        &json!({"refreshToken": current.refresh}),
    );
    expect_error(&resp, 429, "rate_limited");

    // Another client address (127.0.0.2 is loopback too) has its own
    // budget, and is what its session records.
    let body = json!({"email": BOB, "password": PASSWORD, "deviceInfo": "other host"}).to_string();
    let other = tokens_of_login(&request_from(
        "127.0.0.2",
        port,
        "POST",
        "/api/auth/login",
        &body,
    ));
    let body = json!({"refreshToken": other.refresh}).to_string();
    let resp = request_from("127.0.0.2", port, "POST", "/api/auth/refresh", &body);
    let other = expect_refreshed(&resp, &bob_user());
    let list = expect_ok(&list_sessions(port, &other.access), 200);
    let ip_of = |sid: &str| {
        list["data"]["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .find(|s| s["id"] == sid)
            .map(|s| s["ip"].clone())
    };
    assert_eq!(
        ip_of(&sid_of(&other.access)),
        Some(json!("127.0.0.2")),
        "{list}"
    );
}

/// Refresh tokens are stored only as hashes: neither a whole token nor
/// its random part appears anywhere in the database.
pub fn refresh_tokens_are_stored_only_as_hashes(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let a = login_ok(port, BOB, Some("a"));
    let b = expect_refreshed(&refresh(port, &a.refresh), &bob_user());
    let c = login_ok(port, ALICE, None);
    let dump = env.store.dump();
    assert!(
        dump.contains("Chrome") || dump.contains(USER_AGENT) || dump.contains("u-2"),
        "the dump does not look like the store's data: {dump:.300}"
    );
    for token in [&a.refresh, &b.refresh, &c.refresh] {
        let random_part = token.split('.').next().expect("random part");
        assert!(
            !dump.contains(token.as_str()) && !dump.contains(random_part),
            "a refresh token is stored in clear"
        );
    }
    for access in [&a.access, &b.access, &c.access] {
        assert!(!dump.contains(access.as_str()), "an access token is stored");
    }
}

/// `POST /logout` takes the body's refresh token first: with a bearer
/// token of another session also present, only the body's session ends.
pub fn logout_ends_the_session_of_the_body_token_before_the_bearer_token(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let body_session = login_ok(port, BOB, Some("named in the body"));
    let bearer_session = login_ok(port, BOB, Some("bearer only"));
    let resp = post_json(
        port,
        "/api/auth/logout",
        &[("Authorization", &bearer(&bearer_session.access))],
        &json!({"refreshToken": body_session.refresh}),
    );
    expect_ok(&resp, 200);
    expect_error(
        &refresh(port, &body_session.refresh),
        401,
        "refresh_token_revoked",
    );
    expect_access_revoked(&api(port, &body_session.access));
    upstream_saw(&api(port, &bearer_session.access));
    expect_refreshed(&refresh(port, &bearer_session.refresh), &bob_user());
}

/// `rate_limit.per_token: 2`: one token is limited, another is not.
pub fn refresh_attempts_above_the_per_token_limit_get_429_for_that_token_only(kind: StoreKind) {
    let env = Env::start(
        kind,
        Setup {
            per_token: 2,
            rotation: false,
            ..Setup::default()
        },
    );
    let port = env.port();
    let hot = login_ok(port, BOB, Some("busy tab"));
    let calm = login_ok(port, BOB, Some("quiet tab"));
    for _ in 0..2 {
        expect_refreshed(&refresh(port, &hot.refresh), &bob_user());
    }
    let limited = refresh(port, &hot.refresh);
    expect_error(&limited, 429, "rate_limited");
    assert!(
        limited
            .header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok()),
        "Retry-After: {:?}",
        limited.header("retry-after")
    );
    expect_refreshed(&refresh(port, &calm.refresh), &bob_user());
}

/// Cookie mode: the refresh token lives in an `HttpOnly; Secure;
/// SameSite=Strict` cookie scoped to the auth path, out of the JSON body;
/// cookie-authenticated calls need the CSRF header and, when `Origin` is
/// sent, a listed origin; logout clears the cookie.
pub fn cookie_mode_keeps_the_refresh_token_in_a_strict_cookie_behind_a_csrf_check(kind: StoreKind) {
    let env = Env::start(
        kind,
        Setup {
            cookie: true,
            ..Setup::default()
        },
    );
    let port = env.port();
    let resp = login(port, BOB, PASSWORD, Some("browser"));
    assert_eq!(resp.status, 200, "{}", resp.body);
    let body = resp.json();
    let access = body["accessToken"]
        .as_str()
        .expect("accessToken")
        .to_owned();
    assert!(
        body.get("refreshToken").is_none_or(Value::is_null),
        "cookie mode leaves the refresh token out of the body: {body}"
    );
    assert!(!resp.body.contains("backend-issued"), "{}", resp.body);
    let mut cookie = expect_refresh_cookie(&resp);
    upstream_saw(&api(port, &access));

    let jar = |value: &str| format!("{COOKIE_NAME}={value}");
    let cookie_call = |path: &str, value: &str, extra: &[(&str, &str)]| {
        let mut headers = vec![("Cookie", jar(value))];
        headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request(port, "POST", path, &headers, None)
    };

    // Without the CSRF header (what a cross-site form could send): 403.
    expect_error(
        &cookie_call("/api/auth/refresh", &cookie, &[]),
        403,
        "csrf_failed",
    );
    expect_error(
        &cookie_call("/api/auth/refresh", &cookie, &[("Origin", APP_ORIGIN)]),
        403,
        "csrf_failed",
    );
    // With it, but from a foreign Origin: 403.
    expect_error(
        &cookie_call(
            "/api/auth/refresh",
            &cookie,
            &[(CSRF_HEADER, "1"), ("Origin", "https://evil.example")],
        ),
        403,
        "csrf_failed",
    );
    expect_error(
        &cookie_call("/api/auth/logout", &cookie, &[]),
        403,
        "csrf_failed",
    );

    // With the header (and without Origin, or with a listed one): 200,
    // the rotated token in a new cookie, not in the body.
    for extra in [
        vec![(CSRF_HEADER, "1")],
        vec![(CSRF_HEADER, "1"), ("Origin", APP_ORIGIN)],
    ] {
        let ok = cookie_call("/api/auth/refresh", &cookie, &extra);
        let body = expect_ok(&ok, 200);
        for shape in [&body, &body["data"]] {
            assert!(shape["accessToken"].is_string(), "{body}");
            assert!(
                shape.get("refreshToken").is_none_or(Value::is_null),
                "cookie mode leaves the refresh token out of the body: {body}"
            );
        }
        upstream_saw(&api(port, body["accessToken"].as_str().expect("string")));
        let next = expect_refresh_cookie(&ok);
        assert_ne!(next, cookie, "rotation gives a new cookie");
        cookie = next;
    }

    let out = cookie_call("/api/auth/logout", &cookie, &[(CSRF_HEADER, "1")]);
    let body = expect_ok(&out, 200);
    assert_eq!(body["message"], "Logged out successfully");
    let cleared = set_cookie(&out, COOKIE_NAME)
        .unwrap_or_else(|| panic!("logout does not clear the cookie: {:?}", out.headers));
    let (value, attributes) = parse_cookie(cleared);
    assert!(
        attribute(&attributes, "max-age") == Some("0")
            || attribute(&attributes, "expires").is_some(),
        "the clearing cookie must expire at once: {cleared}"
    );
    assert_ne!(value, cookie, "{cleared}");
    assert_eq!(
        attribute(&attributes, "path"),
        Some("/api/auth"),
        "{cleared}"
    );

    expect_error(
        &cookie_call("/api/auth/refresh", &cookie, &[(CSRF_HEADER, "1")]),
        401,
        "refresh_token_revoked",
    );
    expect_access_revoked(&api(port, &access));
}

/// The admin session API: mint a session for a subject with claims (its
/// tokens work and carry the claims), list, revoke one, revoke all; only
/// with the admin token.
pub fn admin_api_mints_lists_and_revokes_sessions_behind_the_admin_token(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let (port, admin) = (env.port(), env.gw.admin_port);
    let good = bearer(ADMIN_TOKEN);
    let wrong = bearer("admin-token-0123456789-0123456789-abcdeX");
    let mint_body = json!({"subject": "svc-7", "claims": {"role": "ops", "tenant": "t-9"}, "deviceInfo": "batch"});

    for auth in [None, Some(wrong.as_str()), Some("Basic YWRtaW46YWRtaW4=")] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let resp = post_json(admin, "/admin/sessions", &headers, &mint_body);
        assert_eq!(
            resp.status, 401,
            "admin API without the admin token: {}",
            resp.body
        );
        let listed = request(
            admin,
            "GET",
            "/admin/sessions?subject=svc-7",
            &headers,
            None,
        );
        assert_eq!(listed.status, 401, "{}", listed.body);
        let deleted = request(
            admin,
            "DELETE",
            "/admin/sessions?subject=svc-7",
            &headers,
            None,
        );
        assert_eq!(deleted.status, 401, "{}", deleted.body);
    }
    expect_metric(&env.gw, CREATED_TOTAL, "", 0.0);

    let mint = || {
        let resp = post_json(
            admin,
            "/admin/sessions",
            &[("Authorization", &good)],
            &mint_body,
        );
        assert_eq!(resp.status, 201, "{}", resp.body);
        let body = resp.json();
        let data = &body["data"];
        let field = |f: &str| {
            data[f]
                .as_str()
                .unwrap_or_else(|| panic!("data.{f} missing: {body}"))
                .to_owned()
        };
        assert_eq!(data["expiresIn"], ACCESS_TTL_SECS, "{body}");
        (
            field("sessionId"),
            Tokens {
                access: field("accessToken"),
                refresh: field("refreshToken"),
            },
        )
    };
    let (first_id, first) = mint();
    let (second_id, second) = mint();
    assert_ne!(first_id, second_id);

    let claims = claims_of(&first.access);
    assert_eq!(claims["sub"], "svc-7", "{claims}");
    assert_eq!(claims["sid"].as_str(), Some(first_id.as_str()), "{claims}");
    assert_eq!(claims["role"], "ops", "{claims}");
    assert_eq!(claims["tenant"], "t-9", "{claims}");
    let seen = upstream_saw(&api(port, &first.access));
    assert_eq!(seen["headers"]["x-user-id"], "svc-7", "{seen}");
    let forwarded = seen["headers"]["authorization"]
        .as_str()
        .expect("Authorization forwarded");
    assert_eq!(
        claims_of(forwarded.trim_start_matches("Bearer "))["role"],
        "ops"
    );
    let svc_user = json!({"id": "svc-7", "role": "ops", "tenant": "t-9"});
    let first = expect_refreshed(&refresh(port, &first.refresh), &svc_user);

    let listed = request(
        admin,
        "GET",
        "/admin/sessions?subject=svc-7",
        &[("Authorization", &good)],
        None,
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    let listed = listed.json();
    assert_eq!(listed["data"]["count"], 2, "{listed}");
    let ids: Vec<&str> = listed["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        ids.contains(&first_id.as_str()) && ids.contains(&second_id.as_str()),
        "{listed}"
    );
    assert!(
        listed["data"]["sessions"]
            .as_array()
            .expect("sessions")
            .iter()
            .all(|s| s["deviceInfo"] == "batch"),
        "{listed}"
    );

    let revoke = |id: &str, auth: &str| {
        request(
            admin,
            "DELETE",
            &format!("/admin/sessions/{id}"),
            &[("Authorization", auth)],
            None,
        )
    };
    assert_eq!(revoke(&first_id, &wrong).status, 401);
    upstream_saw(&api(port, &first.access));
    let resp = revoke(&first_id, &good);
    assert_eq!(resp.status, 200, "{}", resp.body);
    expect_access_revoked(&api(port, &first.access));
    expect_error(&refresh(port, &first.refresh), 401, "refresh_token_revoked");
    upstream_saw(&api(port, &second.access));
    assert_eq!(revoke(&first_id, &good).status, 404, "already revoked");
    assert_eq!(
        revoke(&uuid::Uuid::new_v4().to_string(), &good).status,
        404,
        "unknown"
    );

    let all = request(
        admin,
        "DELETE",
        "/admin/sessions?subject=svc-7",
        &[("Authorization", &good)],
        None,
    );
    assert_eq!(all.status, 200, "{}", all.body);
    assert_eq!(all.json()["data"]["revoked"], 1, "{}", all.body);
    expect_access_revoked(&api(port, &second.access));
    expect_error(
        &refresh(port, &second.refresh),
        401,
        "refresh_token_revoked",
    );

    expect_metric(&env.gw, CREATED_TOTAL, "", 2.0);
    expect_metric(&env.gw, REVOKED_TOTAL, r#"reason="admin""#, 2.0);
}

/// Without `admin_token` the admin session API does not exist (404).
pub fn admin_api_is_absent_without_an_admin_token(kind: StoreKind) {
    let env = Env::start(
        kind,
        Setup {
            admin_token: false,
            ..Setup::default()
        },
    );
    let admin = env.gw.admin_port;
    let body = json!({"subject": "svc-7", "claims": {}, "deviceInfo": "batch"});
    for auth in [vec![], vec![("Authorization", bearer(ADMIN_TOKEN))]] {
        let headers: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let resp = post_json(admin, "/admin/sessions", &headers, &body);
        assert_eq!(resp.status, 404, "{}", resp.body);
        let resp = request(
            admin,
            "GET",
            "/admin/sessions?subject=svc-7",
            &headers,
            None,
        );
        assert_eq!(resp.status, 404, "{}", resp.body);
    }
    expect_metric(&env.gw, CREATED_TOTAL, "", 0.0);
}

/// With an RSA signing key, `/.well-known/jwks.json` publishes the public
/// keys (the one access tokens verify against included) and never an HMAC
/// secret or private key material.
pub fn jwks_publishes_the_rsa_signing_key_and_never_hmac_secrets(kind: StoreKind) {
    const RSA_SIGNING_KEYS: &str = r#"    - kid: rsa
      algorithms: [RS256]
      public_key_file: {FIXTURES}/keys/rsa.pub
      private_key_file: {FIXTURES}/keys/rsa.key
      sign: true
    - kid: hs
      algorithms: [HS256]
      secret: "{SECRET}"
    - kid: ec256
      algorithms: [ES256]
      public_key_file: {FIXTURES}/keys/ec256.pub
"#;
    let env = Env::start(
        kind,
        Setup {
            keys: RSA_SIGNING_KEYS,
            ..Setup::default()
        },
    );
    let port = env.port();
    let resp = request(port, "GET", "/.well-known/jwks.json", &[], None);
    assert_eq!(resp.status, 200, "{}", resp.body);
    let jwks = resp.json();
    let keys = jwks["keys"]
        .as_array()
        .unwrap_or_else(|| panic!("no keys array: {jwks}"));
    let by_kid = |kid: &str| keys.iter().find(|k| k["kid"] == kid);
    let rsa = by_kid("rsa").unwrap_or_else(|| panic!("RSA signing key not published: {jwks}"));
    assert_eq!(rsa["kty"], "RSA", "{rsa}");
    let ec = by_kid("ec256").unwrap_or_else(|| panic!("EC public key not published: {jwks}"));
    assert_eq!(
        (&ec["kty"], &ec["crv"]),
        (&json!("EC"), &json!("P-256")),
        "{ec}"
    );
    assert!(by_kid("hs").is_none(), "HMAC key published: {jwks}");
    for key in keys {
        assert_ne!(key["kty"], "oct", "symmetric key published: {jwks}");
        for private in ["k", "d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "`{private}` published: {key}");
        }
    }
    {
        use base64::Engine as _;
        let secret_b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(HS_SECRET);
        assert!(!resp.body.contains(HS_SECRET) && !resp.body.contains(&secret_b64));
    }

    // Access tokens are signed with that key and verify against the JWKS.
    let tokens = login_ok(port, BOB, None);
    let header = header_of(&tokens.access);
    assert_eq!(
        (&header["alg"], &header["kid"]),
        (&json!("RS256"), &json!("rsa"))
    );
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        rsa["n"].as_str().expect("n"),
        rsa["e"].as_str().expect("e"),
    )
    .expect("RSA JWK");
    let claims = verify_access(&tokens.access, &key, jsonwebtoken::Algorithm::RS256);
    assert_eq!(claims["sub"], "u-2");
    upstream_saw(&api(port, &tokens.access));
    let refreshed = expect_refreshed(&refresh(port, &tokens.refresh), &bob_user());
    verify_access(&refreshed.access, &key, jsonwebtoken::Algorithm::RS256);
}

/// Every lifecycle event moves its metric (and only its own).
pub fn session_lifecycle_events_move_their_metrics(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let (gw, port) = (&env.gw, env.port());
    let text = gw.metrics();
    for line in [
        r#"portcullis_auth_refresh_total{result="ok"} 0"#,
        r#"portcullis_auth_logout_total{scope="all"} 0"#,
        r#"portcullis_sessions_revoked_total{reason="reuse_detected"} 0"#,
        "portcullis_sessions_created_total 0",
        "portcullis_refresh_token_reuse_detected_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "`{line}` not exported at start"
        );
    }

    let a = login_ok(port, BOB, Some("a"));
    let b = login_ok(port, BOB, Some("b"));
    let c = login_ok(port, BOB, Some("c"));
    expect_metric(gw, CREATED_TOTAL, "", 3.0);

    let a2 = expect_refreshed(&refresh(port, &a.refresh), &bob_user());
    expect_metric(gw, REFRESH_TOTAL, r#"result="ok""#, 1.0);

    expect_ok(&logout_with_refresh_token(port, &a2.refresh), 200);
    expect_metric(gw, LOGOUT_TOTAL, r#"scope="session""#, 1.0);
    expect_metric(gw, REVOKED_TOTAL, r#"reason="logout""#, 1.0);
    // Logging out an unknown token revokes nothing and counts nothing.
    expect_ok(&logout_with_refresh_token(port, "no-such-token"), 200);
    expect_metric(gw, LOGOUT_TOTAL, r#"scope="session""#, 1.0);

    expect_error(&refresh(port, &a2.refresh), 401, "refresh_token_revoked");
    expect_metric(gw, REFRESH_TOTAL, r#"result="revoked""#, 1.0);
    expect_error(
        &refresh(port, "no-such-token"),
        401,
        "invalid_refresh_token",
    );
    expect_metric(gw, REFRESH_TOTAL, r#"result="invalid""#, 1.0);

    expect_access_revoked(&api(port, &a2.access));
    expect_metric(gw, JWT_TOTAL, REVOKED_ON_API, 1.0);

    let b_id = sid_of(&b.access);
    expect_ok(
        &with_bearer(
            port,
            "DELETE",
            &format!("/api/auth/sessions/{b_id}"),
            &c.access,
        ),
        200,
    );
    expect_metric(gw, LOGOUT_TOTAL, r#"scope="single""#, 1.0);
    expect_metric(gw, REVOKED_TOTAL, r#"reason="session_deleted""#, 1.0);

    let out = expect_ok(
        &with_bearer(port, "POST", "/api/auth/logout-all", &c.access),
        200,
    );
    assert_eq!(out["data"]["revoked"], 1, "{out}");
    expect_metric(gw, LOGOUT_TOTAL, r#"scope="all""#, 1.0);
    expect_metric(gw, REVOKED_TOTAL, r#"reason="logout_all""#, 1.0);
    expect_access_revoked(&api(port, &c.access));
    expect_metric(gw, JWT_TOTAL, REVOKED_ON_API, 2.0);

    expect_metric(gw, REFRESH_TOTAL, r#"result="ok""#, 1.0);
    expect_metric(gw, CREATED_TOTAL, "", 3.0);
    expect_metric(gw, REUSE_TOTAL, "", 0.0);
}

/// A gateway started after a logout rejects that session's access tokens
/// from its first request (it loads recent revocations at start).
pub fn revoked_access_tokens_stay_rejected_after_a_gateway_restart(kind: StoreKind) {
    let mut env = Env::start(kind, Setup::default());
    let port = env.port();
    let gone = login_ok(port, BOB, Some("logged out"));
    let kept = login_ok(port, BOB, Some("kept"));
    expect_ok(
        &with_bearer(port, "POST", "/api/auth/logout", &gone.access),
        200,
    );
    expect_access_revoked(&api(port, &gone.access));

    env.gw.proc.kill();
    env.gw = env.another_gateway();
    let port = env.port();
    expect_access_revoked(&api(port, &gone.access));
    expect_error(&refresh(port, &gone.refresh), 401, "refresh_token_revoked");
    upstream_saw(&api(port, &kept.access));
    expect_refreshed(&refresh(port, &kept.refresh), &bob_user());
}

/// Sends `racers` refreshes of one token at the same instant.
fn race(port: u16, refresh_token: &str, racers: usize) -> Vec<Response> {
    let barrier = Barrier::new(racers);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..racers)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    refresh(port, refresh_token)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer thread"))
            .collect()
    })
}

fn statuses(answers: &[Response]) -> Vec<(u16, String)> {
    answers
        .iter()
        .map(|r| {
            let code = serde_json::from_str::<Value>(&r.body)
                .ok()
                .and_then(|b| b["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            (r.status, code)
        })
        .collect()
}

/// The refresh cookie of a login or refresh answer, checked against the
/// README's attributes; returns its value.
#[track_caller]
fn expect_refresh_cookie(resp: &Response) -> String {
    let line = set_cookie(resp, COOKIE_NAME)
        .unwrap_or_else(|| panic!("no {COOKIE_NAME} cookie set: {:?}", resp.headers));
    let (value, attributes) = parse_cookie(line);
    assert_opaque_refresh_token(&value);
    assert!(
        attribute(&attributes, "httponly").is_some(),
        "not HttpOnly: {line}"
    );
    assert!(
        attribute(&attributes, "secure").is_some(),
        "not Secure: {line}"
    );
    assert!(
        attribute(&attributes, "samesite").is_some_and(|v| v.eq_ignore_ascii_case("strict")),
        "not SameSite=Strict: {line}"
    );
    assert_eq!(attribute(&attributes, "path"), Some("/api/auth"), "{line}");
    let max_age: u64 = attribute(&attributes, "max-age")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age: {line}"));
    assert!(
        (1..=7 * 24 * 3600).contains(&max_age),
        "Max-Age {max_age} beyond the 7d session lifetime: {line}"
    );
    value
}

/// One write carrying a login (intercepted: the gateway reads the body and
/// calls the backend), a refresh, a session list and a proxied call: four
/// answers, in order, on the one kept-alive connection (RFC 9112 §9.3.2).
pub fn pipelined_session_requests_are_answered_in_order_on_one_connection(kind: StoreKind) {
    let env = Env::start(kind, Setup::default());
    let port = env.port();
    let first = login_ok(port, BOB, Some("laptop"));
    let post = |path: &str, body: &Value| {
        let body = body.to_string();
        format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\nUser-Agent: {USER_AGENT}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {}\r\n\r\n",
            first.access
        )
    };
    let batch = [
        post(
            "/api/auth/login",
            &json!({"email": BOB, "password": PASSWORD, "deviceInfo": "phone"}),
        ),
        post("/api/auth/refresh", &json!({"refreshToken": first.refresh})),
        get("/api/auth/sessions"),
        get("/api/profile"),
    ]
    .concat();
    let (mut stream, mut reader) = keep_alive(port);
    std::io::Write::write_all(&mut stream, batch.as_bytes()).expect("write the batch");
    let mut next = || read_next_response(&mut reader).expect("an answer per request");
    let second = tokens_of_login(&next());
    expect_refreshed(&next(), &bob_user());
    let listed = next();
    assert_eq!(listed.status, 200, "{}", listed.body);
    let devices: Vec<String> = listed.json()["data"]["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no session list: {}", listed.body))
        .iter()
        .map(|s| s["deviceInfo"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        devices.contains(&"laptop".to_owned()) && devices.contains(&"phone".to_owned()),
        "the list answer comes after the pipelined login: {devices:?}"
    );
    upstream_saw(&next());
    upstream_saw(&api(port, &second.access));
}
