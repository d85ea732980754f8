//! `portcullis plugin test`: run one plugin on sample input the way the
//! gateway would, and show what it decided and what it costs.

use std::path::PathBuf;
use std::process::ExitCode;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::plugin::{
    measure, run_once, CompiledPlugin, HeaderChange, Outcome, PluginHost, PluginSpec, RequestMeta,
};

/// Inputs of `plugin test`, from the command line.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The `.wasm` (or `.wat`) module.
    pub module: PathBuf,
    /// The plugin's own config (JSON or YAML), as under `config:` in portcullis.yaml.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Verified claims to feed it (JSON file).
    #[arg(long)]
    pub claims: Option<PathBuf>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    #[arg(long, default_value = "/")]
    pub path: String,
    #[arg(long, default_value = "")]
    pub host: String,
    /// Request header `name: value`; repeatable. Only those on `--request-header` are shown to the plugin.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Header the plugin may read (as `request_headers`); repeatable.
    #[arg(long = "request-header")]
    pub request_headers: Vec<String>,
    /// Header the plugin may write (as `allow_headers`); repeatable. Without
    /// any, the default identity headers plus a few common claim headers are allowed.
    #[arg(long = "allow-header")]
    pub allow_headers: Vec<String>,
    /// Calls to average for the time per call.
    #[arg(long, default_value_t = 1000)]
    pub iterations: u32,
}

/// Claim headers allowed besides the default identity headers when the
/// operator names none.
const EXTRA_ALLOWED: &[&str] = &["x-org", "x-claims", "x-scopes"];

fn fail(message: String) -> ExitCode {
    eprintln!("portcullis plugin test: {message}");
    ExitCode::FAILURE
}

fn read_doc(path: &PathBuf, what: &str) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    serde_json::from_str(&text)
        .or_else(|_| serde_saphyr::from_str::<serde_json::Value>(&text).map_err(|e| e.to_string()))
        .map_err(|e| format!("{what} {} is neither JSON nor YAML: {e}", path.display()))
}

fn header_names(list: &[String]) -> Result<Vec<HeaderName>, String> {
    list.iter()
        .map(|h| {
            HeaderName::from_bytes(h.trim().as_bytes())
                .map_err(|_| format!("`{h}` is not a header name"))
        })
        .collect()
}

/// Runs `plugin test`; returns 0 when the plugin continued or denied, 1 on failure.
pub fn test(args: TestArgs) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(message) => fail(message),
    }
}

fn run(args: TestArgs) -> Result<ExitCode, String> {
    let wasm = std::fs::read(&args.module)
        .map_err(|e| format!("cannot read {}: {e}", args.module.display()))?;
    let config = match &args.config {
        Some(p) => read_doc(p, "config")?,
        None => serde_json::json!({}),
    };
    let claims = match &args.claims {
        Some(p) => read_doc(p, "claims")?,
        None => serde_json::json!({}),
    };
    if !claims.is_object() {
        return Err("claims must be a JSON object".into());
    }
    let claims_json = serde_json::to_vec(&claims).map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}`: write it as `name: value`"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("--header `{h}`: bad name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header `{h}`: bad value"))?;
        headers.append(name, value);
    }
    let allow = if args.allow_headers.is_empty() {
        crate::headers::DEFAULT_IDENTITY_HEADERS
            .iter()
            .chain(EXTRA_ALLOWED)
            .map(|h| HeaderName::from_static(h))
            .filter(|h| !crate::plugin::is_forbidden(h))
            .collect()
    } else {
        header_names(&args.allow_headers)?
    };
    let name = args
        .module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let mut spec = PluginSpec::new(name, wasm);
    spec.config = config;
    spec.allow_headers = allow;
    spec.request_headers = header_names(&args.request_headers)?;
    let (path, query) = match args.path.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (args.path.clone(), String::new()),
    };
    let meta = RequestMeta {
        method: &args.method,
        path: &path,
        query: &query,
        host: &args.host,
        headers: &headers,
    };
    let host = PluginHost::new().map_err(|e| e.to_string())?;
    let run = run_once(&host, spec.clone(), &claims_json, &meta).map_err(|e| e.to_string())?;
    for line in &run.logs {
        println!("log {}: {}", line.level.as_str(), line.message);
    }
    let code = match &run.outcome {
        Outcome::Continue(changes) if changes.is_empty() => {
            println!("continue: no header changes");
            ExitCode::SUCCESS
        }
        Outcome::Continue(changes) => {
            println!("continue with {} header change(s):", changes.len());
            for c in changes {
                match c {
                    HeaderChange::Set(n, v) => {
                        println!("  set     {}: {}", n, String::from_utf8_lossy(v.as_bytes()))
                    }
                    HeaderChange::Append(n, v) => {
                        println!("  append  {}: {}", n, String::from_utf8_lossy(v.as_bytes()))
                    }
                    HeaderChange::Remove(n) => println!("  remove  {n}"),
                }
            }
            ExitCode::SUCCESS
        }
        Outcome::Deny {
            status, message, ..
        } => {
            println!("deny: {status} {message}");
            ExitCode::SUCCESS
        }
        Outcome::Failed { error, .. } => {
            println!("failed ({}): {error}", error.invocation_result().as_str());
            ExitCode::FAILURE
        }
    };
    if args.iterations > 0 {
        let plugin = CompiledPlugin::compile(&host, spec).map_err(|e| e.to_string())?;
        let m = measure(&plugin, &claims_json, &meta, args.iterations);
        println!(
            "time per call: {:.2} µs mean, {:.2} µs min over {} calls (reused instance; first call {:.1} µs)",
            m.mean.as_secs_f64() * 1e6,
            m.min.as_secs_f64() * 1e6,
            m.iterations,
            m.first_call.as_secs_f64() * 1e6
        );
    }
    Ok(code)
}
