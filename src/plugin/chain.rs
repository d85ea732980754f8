//! A route's ordered list of plugins, run on one request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::compiled::Answer;
use super::{request, AbiVersion, CompiledPlugin, InvocationResult, OnError, Outcome, RequestMeta};
use crate::claims::Claims;

/// The plugins of one route, in order. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PluginChain {
    plugins: Vec<Arc<CompiledPlugin>>,
}

/// One plugin call, for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The plugin's configured name.
    pub plugin: Arc<str>,
    /// Bounded label for `portcullis_plugin_invocations_total{result}`.
    pub result: InvocationResult,
    /// The plugin failed and `on_error: skip` let the chain continue.
    pub skipped: bool,
    /// Wall time of the call, instance start-up included.
    pub duration: Duration,
}

/// What a chain decided, plus one [`Invocation`] per plugin it called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainResult {
    /// `Continue` with every plugin's accepted changes in chain order, or
    /// the first `Deny`, or the first fail-closed `Failed`.
    pub outcome: Outcome,
    /// Plugins in the order they ran; those after a stop are absent.
    pub invocations: Vec<Invocation>,
}

impl PluginChain {
    /// A chain running `plugins` in this order.
    pub fn new(plugins: Vec<Arc<CompiledPlugin>>) -> PluginChain {
        PluginChain { plugins }
    }

    /// The plugins, in order.
    pub fn plugins(&self) -> &[Arc<CompiledPlugin>] {
        &self.plugins
    }

    /// Whether the chain has no plugins (then `run` always continues).
    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Runs the chain on one request. `claims` is the verified JWT payload
    /// ([`Claims::empty`] when anonymous). Every plugin sees the same claims
    /// and request; none sees another's changes. Never panics on anything a
    /// plugin does.
    pub fn run(&self, claims: &Arc<Claims>, req: &RequestMeta<'_>) -> ChainResult {
        let mut changes = Vec::new();
        let mut invocations = Vec::with_capacity(self.plugins.len());
        if self.plugins.is_empty() {
            return ChainResult {
                outcome: Outcome::Continue(changes),
                invocations,
            };
        }
        // The v1 request JSON: its shared prefix is encoded once, and only
        // when a v1 plugin is on the chain (v2 plugins read by import).
        let mut prefix = Vec::new();
        let mut request_json = Vec::new();
        for plugin in &self.plugins {
            request_json.clear();
            if plugin.shared.abi == AbiVersion::V1 {
                if prefix.is_empty() {
                    request::encode_prefix(req, &mut prefix);
                }
                request_json.extend_from_slice(&prefix);
                request::encode_headers(
                    req.headers,
                    &plugin.shared.request_headers,
                    &mut request_json,
                );
            }

            let name = &plugin.shared.name;
            // A child of the caller's `plugin_chain` span; when spans are
            // off this is a disabled span and entering it does nothing.
            let span = tracing::debug_span!(
                target: crate::logging::SPAN_TARGET,
                "plugin",
                plugin = &**name,
                result = tracing::field::Empty,
            );
            let _entered = span.enter();
            let started = Instant::now();
            let answer = plugin.invoke(claims, req, &request_json);
            let duration = started.elapsed();
            let mut record = |result: InvocationResult, skipped| {
                span.record("result", result.as_str());
                invocations.push(Invocation {
                    plugin: Arc::clone(name),
                    result,
                    skipped,
                    duration,
                })
            };
            match answer {
                Answer::Continue(mut accepted) => {
                    record(InvocationResult::Ok, false);
                    if changes.is_empty() {
                        // The usual single-plugin chain: no copy.
                        changes = accepted;
                    } else {
                        changes.append(&mut accepted);
                    }
                }
                Answer::Deny { status, message } => {
                    record(InvocationResult::Deny, false);
                    return ChainResult {
                        outcome: Outcome::Deny {
                            status,
                            message,
                            plugin: name.to_string(),
                        },
                        invocations,
                    };
                }
                Answer::Failed(error) => {
                    let skipped = plugin.shared.on_error == OnError::Skip;
                    record(error.invocation_result(), skipped);
                    plugin.log_failure(&error, skipped);
                    if skipped {
                        continue;
                    }
                    return ChainResult {
                        outcome: Outcome::Failed {
                            plugin: name.to_string(),
                            error,
                            skipped: false,
                        },
                        invocations,
                    };
                }
            }
        }
        ChainResult {
            outcome: Outcome::Continue(changes),
            invocations,
        }
    }
}
