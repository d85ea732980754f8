//! Postgres only: revocations reaching a second gateway through LISTEN/NOTIFY,
//! and surviving a database outage.

use super::*;

const NOTIFY_ONLY: &str = "  revocation_poll_interval: 30s\n";
const PROPAGATION_COUNT: &str = "portcullis_revocation_propagation_seconds_count";

/// Polls gateway `port` until `access` is refused; returns how long it took.
#[track_caller]
fn rejected_within(port: u16, access: &str, bound: Duration) -> Duration {
    let start = Instant::now();
    poll(
        "the other gateway to reject the revoked session's access token",
        bound,
        Duration::from_millis(10),
        || (api(port, access).status == 401).then_some(()),
    );
    let took = start.elapsed();
    expect_access_revoked(&api(port, access));
    took
}

/// Two gateways on one database: a revocation on either reaches the other
/// through LISTEN/NOTIFY (the fallback poll is 30 s here, so it cannot be
/// what delivers it) within the 2 s bound, and the receiving node counts
/// it in `portcullis_revocation_propagation_seconds`.
pub fn revocation_on_one_gateway_reaches_a_second_gateway_within_a_second() {
    let env = Env::start(
        StoreKind::Postgres,
        Setup {
            extra: NOTIFY_ONLY,
            reuse_grace: "0s",
            ..Setup::default()
        },
    );
    let a = &env.gw;
    let b = env.another_gateway();
    let logged_out = login_ok(a.port, BOB, Some("logged out on A"));
    let deleted = login_ok(a.port, BOB, Some("deleted on B"));
    let survivor = login_ok(b.port, BOB, Some("survivor"));
    for gw in [a, &b] {
        for t in [&logged_out, &deleted, &survivor] {
            upstream_saw(&api(gw.port, &t.access));
        }
    }
    let b_before = metric_now(&b, PROPAGATION_COUNT, "");
    let a_before = metric_now(a, PROPAGATION_COUNT, "");

    // Logout on A → B.
    expect_ok(&logout_with_refresh_token(a.port, &logged_out.refresh), 200);
    expect_access_revoked(&api(a.port, &logged_out.access));
    let took = rejected_within(b.port, &logged_out.access, Duration::from_secs(2));
    eprintln!("A → B revocation seen after {took:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while metric_now(&b, PROPAGATION_COUNT, "") <= b_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        metric_now(&b, PROPAGATION_COUNT, "") > b_before,
        "B did not count the propagated revocation"
    );

    // Session deletion on B → A.
    let id = sid_of(&deleted.access);
    expect_ok(
        &with_bearer(
            b.port,
            "DELETE",
            &format!("/api/auth/sessions/{id}"),
            &survivor.access,
        ),
        200,
    );
    expect_access_revoked(&api(b.port, &deleted.access));
    let took = rejected_within(a.port, &deleted.access, Duration::from_secs(2));
    eprintln!("B → A revocation seen after {took:?}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while metric_now(a, PROPAGATION_COUNT, "") <= a_before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        metric_now(a, PROPAGATION_COUNT, "") > a_before,
        "A did not count it"
    );

    // Admin revocation on A → B.
    let minted = post_json(
        a.admin_port,
        "/admin/sessions",
        &[("Authorization", &bearer(ADMIN_TOKEN))],
        &json!({"subject": "svc-7", "claims": {"role": "ops"}, "deviceInfo": "batch"}),
    );
    assert_eq!(minted.status, 201, "{}", minted.body);
    let minted = minted.json();
    let minted_access = minted["data"]["accessToken"].as_str().expect("accessToken");
    let minted_id = minted["data"]["sessionId"].as_str().expect("sessionId");
    upstream_saw(&api(b.port, minted_access));
    let revoked = request(
        a.admin_port,
        "DELETE",
        &format!("/admin/sessions/{minted_id}"),
        &[("Authorization", &bearer(ADMIN_TOKEN))],
        None,
    );
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let took = rejected_within(b.port, minted_access, Duration::from_secs(2));
    eprintln!("admin revocation on A seen on B after {took:?}");

    // Reuse detection on B → A (the grace window is 0 s here).
    let victim = login_ok(b.port, BOB, Some("replayed"));
    let rotated = expect_refreshed(&refresh(b.port, &victim.refresh), &bob_user());
    upstream_saw(&api(a.port, &rotated.access));
    expect_error(
        &refresh(b.port, &victim.refresh),
        401,
        "refresh_token_reused",
    );
    let took = rejected_within(a.port, &rotated.access, Duration::from_secs(2));
    eprintln!("reuse detection on B seen on A after {took:?}");

    // Logout-all on A → B.
    let other = login_ok(a.port, BOB, Some("another device"));
    upstream_saw(&api(b.port, &other.access));
    upstream_saw(&api(b.port, &survivor.access));
    expect_ok(
        &with_bearer(a.port, "POST", "/api/auth/logout-all", &other.access),
        200,
    );
    rejected_within(b.port, &other.access, Duration::from_secs(2));
    rejected_within(b.port, &survivor.access, Duration::from_secs(2));

    // The store is shared: the revoked refresh tokens are dead on both.
    for gw in [a, &b] {
        expect_error(
            &refresh(gw.port, &logged_out.refresh),
            401,
            "refresh_token_revoked",
        );
        expect_error(
            &refresh(gw.port, &deleted.refresh),
            401,
            "refresh_token_revoked",
        );
        expect_error(
            &refresh(gw.port, &survivor.refresh),
            401,
            "refresh_token_revoked",
        );
    }
}

/// The database goes away mid-run: `/api/auth` answers 503
/// `session_store_unavailable`, `/readyz` 503, proxying with valid access
/// tokens goes on against the last known revoked set; when the database
/// is back, refresh works again and the sessions are intact.
pub fn store_outage_answers_503_keeps_proxying_and_recovers_with_sessions_intact() {
    let cluster = pg::Cluster::start().expect("start a Postgres cluster of its own");
    let env = Env::start_on(
        Store::on_cluster(&cluster),
        Setup {
            extra: "  pool: { max_connections: 4, acquire_timeout: 1s }\n",
            ..Setup::default()
        },
    );
    let (port, admin) = (env.port(), env.gw.admin_port);
    let revoked = login_ok(port, BOB, Some("revoked before the outage"));
    expect_ok(
        &with_bearer(port, "POST", "/api/auth/logout", &revoked.access),
        200,
    );
    let first = login_ok(port, BOB, Some("before the outage"));
    let live = expect_refreshed(&refresh(port, &first.refresh), &bob_user());
    let before = expect_ok(&list_sessions(port, &live.access), 200);
    assert_eq!(before["data"]["count"], 1, "{before}");
    let ready = get(admin, "/readyz", &[]);
    assert_eq!(ready.status, 200, "{}", ready.body);

    cluster.stop().expect("stop the database");

    let down = refresh(port, &live.refresh);
    expect_error(&down, 503, "session_store_unavailable");
    expect_error(
        &list_sessions(port, &live.access),
        503,
        "session_store_unavailable",
    );
    let login_down = login(port, BOB, PASSWORD, Some("during the outage"));
    expect_error(&login_down, 503, "session_store_unavailable");
    assert!(
        !login_down.body.contains("backend-issued"),
        "{}",
        login_down.body
    );
    // Proxying goes on with the last known revoked set.
    upstream_saw(&api(port, &live.access));
    expect_access_revoked(&api(port, &revoked.access));
    let ready = get(admin, "/readyz", &[]);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(
        ready.json()["session_store"],
        "unavailable",
        "{}",
        ready.body
    );
    assert!(metric_now(&env.gw, REFRESH_TOTAL, r#"result="unavailable""#) >= 1.0);

    cluster.restart().expect("restart the database");

    let back = poll(
        "refresh to work again after the database restart",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let resp = refresh(port, &live.refresh);
            (resp.status != 503).then_some(resp)
        },
    );
    let after_outage = expect_refreshed(&back, &bob_user());
    poll(
        "/readyz to recover",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (get(admin, "/readyz", &[]).status == 200).then_some(()),
    );
    let after = expect_ok(&list_sessions(port, &after_outage.access), 200);
    assert_eq!(after["data"]["count"], 1, "{after}");
    let (was, is) = (
        &before["data"]["sessions"][0],
        &after["data"]["sessions"][0],
    );
    for field in [
        "id",
        "deviceInfo",
        "userAgent",
        "ip",
        "createdAt",
        "expiresAt",
    ] {
        assert_eq!(
            was[field], is[field],
            "session {field} changed across the outage"
        );
    }
    assert_eq!(is["deviceInfo"], "before the outage");
    expect_error(
        &refresh(port, &revoked.refresh),
        401,
        "refresh_token_revoked",
    );
    expect_access_revoked(&api(port, &revoked.access));
    // Logins work again.
    login_ok(port, BOB, Some("after the outage"));
    drop(env);
    drop(cluster);
}
