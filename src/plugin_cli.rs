//! `portcullis plugin test`: run one plugin on sample input the way the
//! gateway would, and show what it decided and what it costs.

use std::fmt;
use std::io::{self, Write};
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

/// Where the results go. A reader that goes away early (`| head -1`) is
/// not an error: the rest of the report is dropped quietly (`println!`
/// would panic on the broken pipe), and the timing run, whose only purpose
/// is a line nobody reads any more, is skipped.
struct Report<W: Write> {
    out: W,
    /// The reader closed the pipe.
    closed: bool,
}

impl<W: Write> Report<W> {
    fn new(out: W) -> Self {
        Report { out, closed: false }
    }

    /// Writes one line; `Err` only for a write failure other than a closed pipe.
    fn line(&mut self, args: fmt::Arguments<'_>) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        let written = self
            .out
            .write_fmt(args)
            .and_then(|()| self.out.write_all(b"\n"));
        self.settle(written)
    }

    /// Flushes what is buffered (same rules as [`Report::line`]).
    fn finish(&mut self) -> Result<(), String> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.out.flush();
        self.settle(flushed)
    }

    fn settle(&mut self, result: io::Result<()>) -> Result<(), String> {
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(())
            }
            Err(e) => Err(format!("cannot write the results: {e}")),
        }
    }
}

/// One line into a [`Report`], returning early on a real write error.
macro_rules! say {
    ($report:expr, $($arg:tt)*) => {
        $report.line(format_args!($($arg)*))?
    };
}

/// Runs `plugin test`; returns 0 when the plugin continued or denied, 1 on failure.
pub(crate) fn test(args: TestArgs) -> ExitCode {
    let mut report = Report::new(io::stdout().lock());
    match run(args, &mut report).and_then(|code| report.finish().map(|()| code)) {
        Ok(code) => code,
        Err(message) => fail(message),
    }
}

fn run<W: Write>(args: TestArgs, report: &mut Report<W>) -> Result<ExitCode, String> {
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
    let serde_json::Value::Object(claims) = claims else {
        return Err("claims must be a JSON object".into());
    };
    let claims = std::sync::Arc::new(crate::claims::Claims::new(claims));
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
        client_cert: None,
    };
    let host = PluginHost::new().map_err(|e| e.to_string())?;
    let run = run_once(&host, spec.clone(), &claims, &meta).map_err(|e| e.to_string())?;
    say!(report, "abi: v{}", run.abi.number());
    for line in &run.logs {
        say!(report, "log {}: {}", line.level.as_str(), line.message);
    }
    let code = match &run.outcome {
        Outcome::Continue(changes) if changes.is_empty() => {
            say!(report, "continue: no header changes");
            ExitCode::SUCCESS
        }
        Outcome::Continue(changes) => {
            say!(report, "continue with {} header change(s):", changes.len());
            for c in changes {
                match c {
                    HeaderChange::Set(n, v) => {
                        say!(
                            report,
                            "  set     {}: {}",
                            n,
                            String::from_utf8_lossy(v.as_bytes())
                        )
                    }
                    HeaderChange::Append(n, v) => {
                        say!(
                            report,
                            "  append  {}: {}",
                            n,
                            String::from_utf8_lossy(v.as_bytes())
                        )
                    }
                    HeaderChange::Remove(n) => say!(report, "  remove  {n}"),
                }
            }
            ExitCode::SUCCESS
        }
        Outcome::Deny {
            status, message, ..
        } => {
            say!(report, "deny: {status} {message}");
            ExitCode::SUCCESS
        }
        Outcome::Failed { error, .. } => {
            say!(
                report,
                "failed ({}): {error}",
                error.invocation_result().as_str()
            );
            ExitCode::FAILURE
        }
    };
    if args.iterations > 0 && !report.closed {
        let plugin = CompiledPlugin::compile(&host, spec).map_err(|e| e.to_string())?;
        let m = measure(&plugin, &claims, &meta, args.iterations);
        say!(
            report,
            "time per call: {:.2} µs mean, {:.2} µs min over {} calls (reused instance; first call {:.1} µs)",
            m.mean.as_secs_f64() * 1e6,
            m.min.as_secs_f64() * 1e6,
            m.iterations,
            m.first_call.as_secs_f64() * 1e6
        );
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe whose reader leaves after `accept` bytes.
    struct ClosesAfter {
        accept: usize,
        written: Vec<u8>,
    }

    impl Write for ClosesAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.written.len() >= self.accept {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            let n = buf.len().min(self.accept - self.written.len());
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn write_report<W: Write>(report: &mut Report<W>) -> Result<(), String> {
        say!(report, "continue with {} header change(s):", 2);
        say!(report, "  set     x-user-id: u-1");
        say!(report, "  set     x-plan: pro");
        report.finish()
    }

    #[test]
    fn a_reader_that_goes_away_ends_the_report_quietly() {
        let mut report = Report::new(ClosesAfter {
            accept: 10,
            written: Vec::new(),
        });
        assert_eq!(write_report(&mut report), Ok(()));
        assert!(report.closed);
        assert_eq!(report.out.written, b"continue w");
    }

    #[test]
    fn other_write_errors_are_reported() {
        struct Full;
        impl Write for Full {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("No space left on device"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut report = Report::new(Full);
        let err = write_report(&mut report).unwrap_err();
        assert!(err.contains("cannot write the results"), "{err}");
        assert!(!report.closed);
    }

    #[test]
    fn an_open_reader_gets_every_line() {
        let mut report = Report::new(Vec::new());
        assert_eq!(write_report(&mut report), Ok(()));
        assert!(!report.closed);
        assert_eq!(
            String::from_utf8_lossy(&report.out),
            "continue with 2 header change(s):\n  set     x-user-id: u-1\n  set     x-plan: pro\n"
        );
    }
}
