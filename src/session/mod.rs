//! Session lifecycle: storage of sessions and refresh tokens, and (to come)
//! the `/api/auth` handlers.

pub mod store;
