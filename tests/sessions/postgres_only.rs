//! Postgres only: revocations reaching a second gateway through LISTEN/NOTIFY,
//! surviving a database outage, and failing fast while the database is down
//! (the store breaker).

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

/// `sessions.pool.acquire_timeout` of the breaker scenario: long, so that a
/// request that waits for the pool cannot be mistaken for one that does not.
const LONG_ACQUIRE: Duration = Duration::from_secs(10);
/// What "at once" means while the breaker is open: far below [`LONG_ACQUIRE`]
/// (a behavioural bound, not a performance measurement).
const AT_ONCE: Duration = Duration::from_secs(2);
const BREAKER_STATE: &str = "portcullis_session_store_breaker_state";
const FAST_FAILURES: &str = "portcullis_session_store_fast_failures_total";
const BREAKER_OPENED: &str = "session store unavailable: session requests answer 503 at once";
const BREAKER_CLOSED: &str = "session store reachable again";

/// A proxied route without authentication.
const OPEN_ROUTE: &str = r#"  - name: open
    match: { path_prefix: /open }
    upstream: main
    auth: none
"#;

/// Sends `send` and returns its answer with how long it took.
fn timed(send: impl FnOnce() -> Response) -> (Response, Duration) {
    let start = Instant::now();
    let resp = send();
    (resp, start.elapsed())
}

/// A 503 `session_store_unavailable` answered within [`AT_ONCE`], saying
/// when to retry (the 1 s probe interval).
#[track_caller]
fn expect_fast_503((resp, took): (Response, Duration), what: &str) {
    assert_eq!(
        (resp.status, resp.json()["error"].as_str()),
        (503, Some("session_store_unavailable")),
        "{what}: {}",
        resp.body
    );
    assert_eq!(
        resp.header("retry-after"),
        Some("1"),
        "{what}: Retry-After is the probe interval in seconds: {:?}",
        resp.headers
    );
    assert!(
        took < AT_ONCE,
        "{what} took {took:?} while the breaker is open: it waited for the pool (acquire timeout {LONG_ACQUIRE:?})"
    );
}

/// The database crashes under a gateway whose pool waits 10 s for a
/// connection. At most the first session request waits for the pool; it
/// opens the breaker, and from then on refreshes, session lists, logins and
/// the admin API answer 503 with `Retry-After` at once, the breaker gauge
/// shows open, `/readyz` is 503, and proxying (`auth: none` and with access
/// tokens) goes on. When the database is back, the background probe closes
/// the breaker by itself: refresh works again, the gauge shows closed, and a
/// refresh token issued before the outage (never used since) still
/// refreshes.
pub fn store_outage_fails_session_requests_fast_until_the_probe_sees_the_store_back() {
    let cluster = pg::Cluster::start().expect("start a Postgres cluster of its own");
    let env = Env::start_on(
        Store::on_cluster(&cluster),
        Setup {
            routes: OPEN_ROUTE,
            extra:
                "  store_probe_interval: 1s\n  pool: { max_connections: 4, acquire_timeout: 10s }\n",
            ..Setup::default()
        },
    );
    let (port, admin) = (env.port(), env.gw.admin_port);
    // Polled for the recovery (its refresh token is consumed then) …
    let polled = login_ok(port, BOB, Some("polled for the recovery"));
    // … and kept: its refresh token is only presented during the outage
    // (which must not consume it) and once after.
    let kept = login_ok(port, BOB, Some("kept through the outage"));
    expect_metric(&env.gw, BREAKER_STATE, "", 0.0);
    expect_metric(&env.gw, FAST_FAILURES, "", 0.0);

    cluster.crash().expect("crash the database");

    // The first session call after the crash may wait for the pool (up to
    // the acquire timeout); it finds the store down and opens the breaker
    // (unless the background ping got there first).
    let (first, took) = timed(|| refresh(port, &kept.refresh));
    expect_error(&first, 503, "session_store_unavailable");
    assert!(
        took < LONG_ACQUIRE + Duration::from_secs(5),
        "the first refresh after the crash took {took:?}"
    );
    eprintln!("first refresh after the crash: 503 after {took:?}");

    for attempt in 1..=3 {
        let answer = timed(|| refresh(port, &kept.refresh));
        expect_error(&answer.0, 503, "session_store_unavailable");
        expect_fast_503(answer, &format!("refresh #{attempt} after the first"));
    }
    let answer = timed(|| list_sessions(port, &polled.access));
    expect_error(&answer.0, 503, "session_store_unavailable");
    expect_fast_503(answer, "GET /sessions");
    let answer = timed(|| login(port, BOB, PASSWORD, Some("during the outage")));
    expect_error(&answer.0, 503, "session_store_unavailable");
    assert!(
        !answer.0.body.contains("backend-issued"),
        "{}",
        answer.0.body
    );
    expect_fast_503(answer, "a login");
    let answer = timed(|| {
        request(
            admin,
            "GET",
            "/admin/sessions?subject=u-2",
            &[("Authorization", &bearer(ADMIN_TOKEN))],
            None,
        )
    });
    expect_fast_503(answer, "the admin session API");

    // Between probes the breaker is open (1); while one is in flight, 2.
    poll(
        "the breaker gauge to show open",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (metric_now(&env.gw, BREAKER_STATE, "") == 1.0).then_some(()),
    );
    // Three refreshes, the list, the login and the admin call, at least.
    let fast = metric_now(&env.gw, FAST_FAILURES, "");
    assert!(fast >= 6.0, "{FAST_FAILURES} = {fast}");
    assert!(metric_now(&env.gw, REFRESH_TOTAL, r#"result="unavailable""#) >= 4.0);
    let ready = get(admin, "/readyz", &[]);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(
        ready.json()["session_store"],
        "unavailable",
        "{}",
        ready.body
    );
    // Proxying is untouched: an open route, and a protected one with a
    // valid access token.
    let (open, took) = timed(|| env.gw.get("/open/ping", &[]));
    assert_eq!(open.status, 200, "{}", open.body);
    assert!(took < AT_ONCE, "the open route took {took:?}");
    upstream_saw(&api(port, &kept.access));

    cluster.restart().expect("restart the database");

    // Nothing but the probe closes the breaker: poll until refresh works.
    let back = poll(
        "refresh to work again after the database restart",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let resp = refresh(port, &polled.refresh);
            (resp.status != 503).then_some(resp)
        },
    );
    let after = expect_refreshed(&back, &bob_user());
    expect_metric(&env.gw, BREAKER_STATE, "", 0.0);
    poll(
        "/readyz to recover",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || (get(admin, "/readyz", &[]).status == 200).then_some(()),
    );
    // The session data is intact: the kept refresh token still refreshes,
    // and both sessions are listed with what they were opened with.
    expect_refreshed(&refresh(port, &kept.refresh), &bob_user());
    let listed = expect_ok(&list_sessions(port, &after.access), 200);
    assert_eq!(listed["data"]["count"], 2, "{listed}");
    let mut devices: Vec<&str> = listed["data"]["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .filter_map(|s| s["deviceInfo"].as_str())
        .collect();
    devices.sort_unstable();
    assert_eq!(
        devices,
        ["kept through the outage", "polled for the recovery"]
    );
    login_ok(port, BOB, Some("after the outage"));

    // One log line when the breaker opened (naming the store and the
    // cause) and one when it closed.
    let log = env.gw.proc.log_text();
    let opened: Vec<&str> = log.lines().filter(|l| l.contains(BREAKER_OPENED)).collect();
    assert_eq!(
        opened.len(),
        1,
        "breaker-opened lines:\n{}",
        opened.join("\n")
    );
    assert!(
        opened[0].contains(&format!("127.0.0.1:{}", cluster.port)) && opened[0].contains("cause"),
        "the opening line names the store and the cause: {}",
        opened[0]
    );
    let closed = log.lines().filter(|l| l.contains(BREAKER_CLOSED)).count();
    assert_eq!(closed, 1, "breaker-closed lines in:\n{log}");
    drop(env);
    drop(cluster);
}
