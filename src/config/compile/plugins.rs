//! The `plugins` section: Wasm modules compiled once, with their limits.

use std::collections::HashMap;
use std::sync::Arc;

use http::header::HeaderName;
use serde_saphyr::Spanned;

use super::Checker;
use crate::config::defaults;
use crate::config::raw::{PluginIsolation, PluginOnError, RawPlugin};
use crate::plugin::{CompiledPlugin, Isolation, Limits, OnError, PluginHost, PluginSpec};

/// The process's one Wasm engine, started on first use (only configs with
/// plugins pay for it) and shared by every config generation.
fn plugin_host() -> Result<&'static PluginHost, String> {
    static HOST: std::sync::OnceLock<Result<PluginHost, String>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| PluginHost::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

pub(super) fn compile_plugins(
    ck: &mut Checker,
    raw: &std::collections::BTreeMap<String, Spanned<RawPlugin>>,
) -> HashMap<String, Arc<CompiledPlugin>> {
    let mut out = HashMap::new();
    if raw.is_empty() {
        return out;
    }
    let host = match plugin_host() {
        Ok(h) => h,
        Err(e) => {
            ck.general(format!("the Wasm engine could not start: {e}"));
            return out;
        }
    };
    for (name, spanned) in raw {
        let p = &spanned.value;
        let header_list = |ck: &mut Checker, list: &[Spanned<String>]| -> Option<Vec<HeaderName>> {
            let mut names = Vec::new();
            let mut ok = true;
            for h in list {
                match HeaderName::from_bytes(h.value.trim().as_bytes()) {
                    Ok(n) => names.push(n),
                    Err(_) => {
                        ck.at(
                            h,
                            format!("plugin `{name}`: `{}` is not a valid header name", h.value),
                        );
                        ok = false;
                    }
                }
            }
            ok.then_some(names)
        };
        let allow = header_list(ck, &p.allow_headers);
        let request = header_list(ck, &p.request_headers);
        let wasm = ck.read_file(&p.module, "plugin module");
        let (Some(allow_headers), Some(request_headers), Some(wasm)) = (allow, request, wasm)
        else {
            continue;
        };
        let spec = PluginSpec {
            name: name.clone(),
            wasm,
            config: p.config.clone().unwrap_or_else(|| serde_json::json!({})),
            allow_headers,
            request_headers,
            on_error: match p.on_error {
                Some(PluginOnError::Skip) => OnError::Skip,
                _ => OnError::Deny,
            },
            isolation: match p.isolation {
                Some(PluginIsolation::PerRequest) => Isolation::PerRequest,
                _ => Isolation::Reused,
            },
            limits: Limits {
                memory_bytes: p
                    .memory_limit
                    .map(|b| b.0)
                    .unwrap_or(defaults::PLUGIN_MEMORY),
                deadline: p.timeout.map(|d| d.0).unwrap_or(defaults::PLUGIN_TIMEOUT),
                max_input_bytes: defaults::PLUGIN_MAX_INPUT,
            },
        };
        match CompiledPlugin::compile(host, spec) {
            Ok(plugin) => {
                out.insert(name.clone(), Arc::new(plugin));
            }
            Err(e) => ck.at(&p.module, e.to_string()),
        }
    }
    out
}
