//! Reading the request one way (see [`crate::canonical`]), before any
//! routing: the head size, framing and identity headers, the canonical path.

use pingora::proxy::Session;

use super::{Gateway, RequestCtx};
use crate::error::GatewayError;
use crate::generation::Generation;

/// The path the session routes are looked up with: the canonical path,
/// lower-cased unless paths are case-sensitive (`/API/Auth/refresh` is the
/// refresh route to a case-insensitive backend, so it is to the gateway).
pub(super) fn session_api_path<'a>(path: &'a str, gen: &Generation) -> std::borrow::Cow<'a, str> {
    if !gen.read.case_sensitive && path.bytes().any(|b| b.is_ascii_uppercase()) {
        path.to_ascii_lowercase().into()
    } else {
        path.into()
    }
}

/// 431 when the request headers are larger than `limits.max_header_size`.
pub(super) fn check_head_size(gen: &Generation, session: &Session) -> Result<(), GatewayError> {
    let header_bytes: usize = session
        .req_header()
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > gen.max_header_size {
        return Err(GatewayError::HeadersTooLarge {
            limit: gen.max_header_size,
        });
    }
    Ok(())
}

impl Gateway {
    /// Reads the request one way (see [`crate::canonical`]): refuses heads
    /// that could be framed or attributed twice, strips identity headers in
    /// every spelling, and replaces the request target with its canonical
    /// path, so that routing, plugins, the access log and the upstream all
    /// see the same path. Allocates only when something is rewritten.
    pub(super) fn read_one_way(
        &self,
        session: &mut Session,
        gen: &Generation,
        ctx: &mut RequestCtx,
    ) -> Result<(), GatewayError> {
        let downstream = session.as_downstream();
        let http2 = downstream.is_http2();
        let raw_head = (!http2).then(|| downstream.to_h1_raw());
        crate::canonical::headers::check_framing(session.req_header(), raw_head.as_deref())
            .map_err(GatewayError::BadHeaders)?;
        let stripped = gen
            .headers
            .strip_identity(session.req_header_mut(), gen.read.underscore_headers)
            .map_err(GatewayError::BadHeaders)?;
        if stripped > 0 {
            self.metrics.header_spoof_stripped.inc_by(stripped as u64);
        }

        let req = session.req_header();
        let raw = req.raw_path();
        let origin_form = raw.first() == Some(&b'/');
        // Absolute-form (`GET http://host/p`): the path component is read
        // and the upstream gets origin-form.
        let target = if origin_form {
            raw
        } else {
            req.uri
                .path_and_query()
                .map(|pq| pq.as_str().as_bytes())
                .filter(|pq| pq.first() == Some(&b'/'))
                .unwrap_or(raw)
        };
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(q) => (&target[..q], Some(&target[q..])),
            None => (target, None),
        };
        let canonical =
            crate::canonical::canonicalize(path, gen.read.path).map_err(GatewayError::BadPath)?;
        if canonical.matched() != canonical.forward() {
            ctx.match_path = Some(canonical.matched().to_owned());
        }
        if canonical.is_rewritten() || !origin_form {
            let mut uri = String::with_capacity(canonical.forward().len() + target.len() + 64);
            // HTTP/2 carries the host only in `:authority` (the URI's): keep it.
            if http2 {
                if let (Some(scheme), Some(authority)) = (req.uri.scheme_str(), req.uri.authority())
                {
                    uri.push_str(scheme);
                    uri.push_str("://");
                    uri.push_str(authority.as_str());
                }
            }
            uri.push_str(canonical.forward());
            if let Some(q) = query {
                uri.push_str(&String::from_utf8_lossy(q));
            }
            let raw_text = String::from_utf8_lossy(raw).into_owned();
            let parsed = uri
                .parse::<http::Uri>()
                .map_err(|_| GatewayError::UnreadableTarget)?;
            session.req_header_mut().set_uri(parsed);
            ctx.raw_path = Some(raw_text);
        }
        Ok(())
    }
}
