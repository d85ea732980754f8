//! Session lifecycle: the `/api/auth` routes the gateway answers itself,
//! login interception, the admin session API, the in-memory revoked set, and
//! the storage of sessions and refresh tokens behind [`store::SessionStore`].

pub mod admin_api;
pub mod handlers;
pub mod intercept;
pub mod login;
pub mod ratelimit;
pub mod refresh_token;
pub mod request;
pub mod service;
/// The revoked-session set lives beside `access`, which reads it; sessions fill it.
pub use crate::revoked;
pub mod settings;
pub mod store;

pub use service::SessionService;
pub use settings::{CookieSettings, Endpoint, LoginCapture, SessionSettings};
