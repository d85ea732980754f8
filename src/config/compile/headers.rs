//! The `headers` section: identity headers stripped from clients, request id.

use http::header::HeaderName;
use serde_saphyr::Spanned;

use super::Checker;
use crate::config::raw::RawConfig;
use crate::headers::HeaderPolicy;

pub(super) fn compile_headers(ck: &mut Checker, raw: &RawConfig) -> HeaderPolicy {
    let mut policy = HeaderPolicy::default();
    // Identity names are kept in folded form (`x_user_id` is `x-user-id`):
    // requests are compared in that form too.
    let parse = |ck: &mut Checker, s: &Spanned<String>| match HeaderName::from_bytes(
        crate::canonical::fold_header_name(s.value.trim()).as_bytes(),
    ) {
        Ok(h) => Some(h),
        Err(_) => {
            ck.at(s, format!("`{}` is not a valid header name", s.value));
            None
        }
    };
    if let Some(list) = &raw.headers.identity {
        policy.identity = list.iter().filter_map(|s| parse(ck, s)).collect();
    }
    if let Some(prefixes) = &raw.headers.identity_prefixes {
        policy.identity_prefixes = prefixes
            .iter()
            .map(|p| crate::canonical::fold_header_name(p.value.trim()).into_owned())
            .collect();
    }
    if let Some(rid) = &raw.headers.request_id {
        if let Some(h) = parse(ck, rid) {
            policy.request_id = h;
        }
    }
    policy
}
