//! The parts of the `listeners` section that need more than a default: the
//! upgrade socket, which two processes must find at the same path.

use std::path::PathBuf;

use super::Checker;
use crate::config::defaults;
use crate::config::raw::RawListeners;

/// Longest Unix socket path the kernel takes (`sun_path` is 108 bytes with
/// the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `listeners.upgrade_socket`, absolute: relative paths are taken from the
/// config file's directory, so a process started from elsewhere with the
/// same file meets the running one on the same socket.
pub(super) fn compile_upgrade_socket(
    ck: &mut Checker,
    listeners: &RawListeners,
    admin_port: u16,
) -> PathBuf {
    let Some(span) = &listeners.upgrade_socket else {
        return defaults::upgrade_socket(admin_port);
    };
    if span.value.trim().is_empty() {
        ck.at(
            span,
            "listeners.upgrade_socket is empty: name a path such as /run/portcullis/upgrade.sock",
        );
        return defaults::upgrade_socket(admin_port);
    }
    let joined = ck.base_dir.join(&span.value);
    let path = std::path::absolute(&joined).unwrap_or(joined);
    let length = path.as_os_str().len();
    if length > MAX_SOCKET_PATH {
        ck.at(
            span,
            format!(
                "listeners.upgrade_socket `{}` is {length} bytes long; a Unix socket path may have at most {MAX_SOCKET_PATH}: choose a shorter one",
                path.display()
            ),
        );
    }
    match path.parent() {
        Some(dir) if !dir.is_dir() => ck.at(
            span,
            format!(
                "listeners.upgrade_socket `{}`: directory {} does not exist; create it (writable only by the gateway's user) or choose another",
                span.value,
                dir.display()
            ),
        ),
        _ => {}
    }
    path
}
