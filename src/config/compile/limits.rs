//! The `limits` section: slow and idle clients, connection cap.

use std::time::Duration;

use super::Checker;
use crate::config::defaults;
use crate::config::raw::RawLimits;
use crate::config::units::HumanDuration;
use crate::generation::ClientLimits;

/// The slow-client limits; zero durations or connections are refused.
pub(super) fn compile_client_limits(ck: &mut Checker, limits: &RawLimits) -> ClientLimits {
    let mut pick = |value: Option<HumanDuration>, default: Duration, key: &str| match value {
        Some(HumanDuration(d)) if d.is_zero() => {
            ck.general(format!(
                "limits.{key} is 0: give clients some time, e.g. `10s`"
            ));
            default
        }
        Some(HumanDuration(d)) => d,
        None => default,
    };
    let header_read_timeout = pick(
        limits.header_read_timeout,
        defaults::HEADER_READ_TIMEOUT,
        "header_read_timeout",
    );
    let body_read_timeout = pick(
        limits.body_read_timeout,
        defaults::BODY_READ_TIMEOUT,
        "body_read_timeout",
    );
    let keepalive_timeout = pick(
        limits.keepalive_timeout,
        defaults::KEEPALIVE_TIMEOUT,
        "keepalive_timeout",
    );
    let max_connections = match limits.max_connections {
        Some(0) => {
            ck.general(
                "limits.max_connections is 0: no client could connect; remove it or set e.g. 10000",
            );
            defaults::MAX_CONNECTIONS
        }
        Some(n) => n,
        None => defaults::MAX_CONNECTIONS,
    };
    ClientLimits {
        header_read_timeout,
        body_read_timeout,
        keepalive_timeout,
        max_connections,
    }
}
