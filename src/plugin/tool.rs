//! Running a single plugin outside a chain: `portcullis plugin test` and
//! benchmarks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::compiled::Answer;
use super::{
    request, AbiVersion, CompiledPlugin, LogLine, OnError, Outcome, PluginError, PluginHost,
    PluginSpec, RequestMeta,
};
use crate::claims::Claims;

/// The result of [`run_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRun {
    /// What the plugin decided (`Failed.skipped` mirrors its `on_error`).
    pub outcome: Outcome,
    /// Time of the `on_request` call (inputs copied in, guest run, answer
    /// checked) on a freshly started instance.
    pub duration: Duration,
    /// Everything the plugin logged, `init` included (at most 64 lines).
    pub logs: Vec<LogLine>,
    /// The ABI the module speaks.
    pub abi: AbiVersion,
}

/// Loads a plugin the way the gateway does (same checks and limits) and runs
/// one request through it on a fresh instance. Load errors (bad module,
/// rejected config) are the `Err`; a failing call is `Outcome::Failed`.
pub fn run_once(
    host: &PluginHost,
    spec: PluginSpec,
    claims: &Arc<Claims>,
    req: &RequestMeta<'_>,
) -> Result<PluginRun, PluginError> {
    let plugin = CompiledPlugin::compile(host, spec)?;
    let request_json = encode_request(&plugin, req);
    let (answer, duration, logs) = plugin.invoke_captured(claims, req, &request_json);
    Ok(PluginRun {
        outcome: plugin.outcome(answer),
        duration,
        logs,
        abi: plugin.abi(),
    })
}

/// Mean cost of a call, from [`measure`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measurement {
    /// Calls averaged (after the first).
    pub iterations: u32,
    /// The first call on this thread: includes starting an instance in
    /// `reused` mode.
    pub first_call: Duration,
    /// Mean of the following calls: the steady-state cost per request.
    pub mean: Duration,
    /// Fastest of the following calls.
    pub min: Duration,
    /// Outcome of the last call.
    pub outcome: Outcome,
}

/// Calls `plugin` once, then `iterations` more times on the same thread,
/// exactly as a chain would (reused instance or fresh per call, per its
/// isolation), and reports the mean time per call.
pub fn measure(
    plugin: &CompiledPlugin,
    claims: &Arc<Claims>,
    req: &RequestMeta<'_>,
    iterations: u32,
) -> Measurement {
    let request_json = encode_request(plugin, req);
    let started = Instant::now();
    let mut answer = plugin.invoke(claims, req, &request_json);
    let first_call = started.elapsed();
    let mut total = Duration::ZERO;
    let mut min = Duration::MAX;
    for _ in 0..iterations {
        let started = Instant::now();
        answer = plugin.invoke(claims, req, &request_json);
        let took = started.elapsed();
        total += took;
        min = min.min(took);
    }
    Measurement {
        iterations,
        first_call,
        mean: total.checked_div(iterations).unwrap_or(first_call),
        min: if iterations == 0 { first_call } else { min },
        outcome: plugin.outcome(answer),
    }
}

impl CompiledPlugin {
    /// Runs this plugin alone on one request, as a chain would. For a chain,
    /// use [`PluginChain::run`](super::PluginChain::run).
    pub fn call(&self, claims: &Arc<Claims>, req: &RequestMeta<'_>) -> Outcome {
        let request_json = encode_request(self, req);
        self.outcome(self.invoke(claims, req, &request_json))
    }

    fn outcome(&self, answer: Answer) -> Outcome {
        match answer {
            Answer::Continue(changes) => Outcome::Continue(changes),
            Answer::Deny { status, message } => Outcome::Deny {
                status,
                message,
                plugin: self.name().to_string(),
            },
            Answer::Failed(error) => Outcome::Failed {
                plugin: self.name().to_string(),
                error,
                skipped: self.on_error() == OnError::Skip,
            },
        }
    }
}

/// The v1 request input (empty for v2 modules).
fn encode_request(plugin: &CompiledPlugin, req: &RequestMeta<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    if plugin.abi() == AbiVersion::V2 {
        return out;
    }
    request::encode_prefix(req, &mut out);
    request::encode_headers(req.headers, plugin.request_headers(), &mut out);
    out
}
