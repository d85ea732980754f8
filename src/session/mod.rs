//! Session lifecycle: the `/api/auth` routes the gateway answers itself,
//! login interception, the admin session API, the in-memory revoked set, and
//! the storage of sessions and refresh tokens behind [`store::SessionStore`].

pub(crate) mod admin_api;
pub(crate) mod backchannel;
pub(crate) mod breaker;
pub(crate) mod handlers;
pub(crate) mod intercept;
pub(crate) mod login;
pub(crate) mod ratelimit;
pub mod refresh_token;
pub(crate) mod request;
pub(crate) mod service;
/// The revoked-session set lives beside `access`, which reads it; sessions fill it.
pub use crate::revoked;
pub(crate) mod settings;
pub mod store;

pub use service::SessionService;
pub use settings::{CookieSettings, Endpoint, LoginCapture, SessionSettings};
