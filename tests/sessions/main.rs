//! End-to-end tests of the session lifecycle — `/api/auth/*`, login
//! interception, the admin session API and revocation — written against the
//! README contract ("Configuration reference" → `sessions:` and the route
//! `login:` block, and "Sessions (`/api/auth`)"): a real `portcullis`
//! process, the demo backend as the login upstream, raw HTTP over loopback and
//! a real session store.
//!
//! One conformance suite: every scenario in [`scenarios`] takes a
//! [`StoreKind`] and runs twice, as `sqlite::<scenario>` (a temp file) and as
//! `postgres::<scenario>` (a database of its own on the shared throwaway
//! cluster of `common/postgres.rs`, or on `DATABASE_URL`'s server). What only
//! Postgres does — revocations reaching a second gateway through
//! LISTEN/NOTIFY, surviving a database outage — is in [`postgres_only`] and
//! runs as `postgres::<scenario>` too.
//!
//! Nothing waits a fixed time: every wait polls a condition with a deadline.
//!
//! One file per section: the harness in `stores.rs`, `gateway_config.rs`,
//! `http_client.rs`, `contract_checks.rs` and `tokens_and_metrics.rs` (all
//! in scope everywhere through the `use`s below), the scenarios in
//! `scenarios.rs`, `postgres_only.rs` and `path_scenarios.rs`. The test
//! matrix stays here, so the tests keep their names: `sqlite::<scenario>`,
//! `postgres::<scenario>` and `sqlite_paths::<scenario>`.

#[path = "../common/mod.rs"]
mod common;
#[path = "../common/postgres.rs"]
mod pg;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const REFRESH_SECRET: &str = "refresh-secret-0123456789-0123456789-abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789-0123456789-abcdef";
const USER_AGENT: &str = "sessions-test/1.0 (X11; Linux x86_64)";
const PASSWORD: &str = "password123";
const BOB: &str = "bob@example.com";
const ALICE: &str = "alice@example.com";
/// `access_token_ttl` default (15m) in seconds: `expiresIn` and `exp - iat`.
const ACCESS_TTL_SECS: i64 = 900;

// The harness, one file per section, all of it in scope here so that every
// module's `use super::*` sees it.
mod contract_checks;
mod gateway_config;
mod http_client;
mod stores;
mod tokens_and_metrics;
use contract_checks::*;
use gateway_config::*;
use http_client::*;
use stores::*;
use tokens_and_metrics::*;

// The scenarios, run by the matrix below.
pub mod path_scenarios;
pub mod postgres_only;
pub mod scenarios;

// ---------------------------------------------------------------------------
// The test matrix
// ---------------------------------------------------------------------------

/// `sqlite::<scenario>` and `postgres::<scenario>` for every shared scenario,
/// plus `postgres::<scenario>` for the Postgres-only ones.
macro_rules! conformance_suite {
    (both: [$($scenario:ident),* $(,)?], postgres_only: [$($pg_only:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $scenario() {
                    crate::scenarios::$scenario(crate::StoreKind::Sqlite);
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                fn $scenario() {
                    crate::scenarios::$scenario(crate::StoreKind::Postgres);
                }
            )*
            $(
                #[test]
                fn $pg_only() {
                    crate::postgres_only::$pg_only();
                }
            )*
        }
    };
}

conformance_suite! {
    both: [
        seed_000_client_with_rotation_off_refreshes_lists_and_logs_out_with_its_first_token,
        seed_000_flow_with_rotation_logs_out_with_the_newest_refresh_token,
        seed_003_client_registers_refreshes_at_refresh_token_and_logs_out_with_bearer_only,
        login_interception_swaps_in_session_tokens_and_passes_failures_through,
        login_answers_with_session_tokens_are_not_cacheable,
        sessions_list_shows_each_device_with_its_metadata_and_marks_the_current_one,
        logout_all_revokes_every_device_of_the_subject_and_their_access_tokens,
        deleting_one_session_revokes_only_that_session,
        deleting_another_users_session_is_404_like_an_unknown_id_and_a_non_uuid_is_400,
        bearer_session_routes_reject_missing_bad_and_expired_access_tokens,
        refresh_with_rotated_token_after_grace_revokes_session,
        refresh_with_rotation_off_returns_the_same_refresh_token,
        concurrent_refreshes_without_grace_rotate_once_and_revoke_the_session_on_reuse,
        concurrent_refreshes_within_grace_all_succeed_with_distinct_working_tokens,
        refresh_after_the_session_lifetime_is_refresh_token_expired,
        malformed_refresh_requests_get_precise_client_errors,
        unknown_or_forged_refresh_tokens_are_invalid,
        refresh_attempts_above_the_per_ip_limit_get_429_with_retry_after,
        refresh_attempts_above_the_per_token_limit_get_429_for_that_token_only,
        client_sent_forwarded_for_neither_escapes_the_ip_limit_nor_sets_the_session_ip,
        refresh_tokens_are_stored_only_as_hashes,
        logout_ends_the_session_of_the_body_token_before_the_bearer_token,
        cookie_mode_keeps_the_refresh_token_in_a_strict_cookie_behind_a_csrf_check,
        admin_api_mints_lists_and_revokes_sessions_behind_the_admin_token,
        admin_api_is_absent_without_an_admin_token,
        jwks_publishes_the_rsa_signing_key_and_never_hmac_secrets,
        session_lifecycle_events_move_their_metrics,
        revoked_access_tokens_stay_rejected_after_a_gateway_restart,
        pipelined_session_requests_are_answered_in_order_on_one_connection,
    ],
    postgres_only: [
        revocation_on_one_gateway_reaches_a_second_gateway_within_a_second,
        store_outage_answers_503_keeps_proxying_and_recovers_with_sessions_intact,
        store_outage_fails_session_requests_fast_until_the_probe_sees_the_store_back,
    ],
}

/// Session routes spelled with a trailing slash ([`path_scenarios`]: added
/// after the matrix, each takes a [`StoreKind`] like those in [`scenarios`]).
mod sqlite_paths {
    #[test]
    fn session_routes_with_one_trailing_slash_are_answered_by_the_gateway() {
        crate::path_scenarios::session_routes_with_one_trailing_slash_are_answered_by_the_gateway(
            crate::StoreKind::Sqlite,
        );
    }
}
