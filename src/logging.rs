//! `tracing` setup: human-readable or JSON lines on stderr. pingora's own
//! `log` records are routed into the same subscriber.
//!
//! Spans (`request` and its children `jwt_verify`, `plugin_chain` → `plugin`,
//! `upstream`) are created at debug level under [`SPAN_TARGET`]. `log.spans`
//! turns that target on or off with a directive placed *before* the
//! configured filter, so a request pays only the disabled-callsite check
//! when they are off, and an explicit `portcullis::span=…` in `log.level`
//! or `RUST_LOG` still wins.

use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::EnvFilter;

use serde::Deserialize;

/// How log events are written.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// Logging settings; fixed for the life of the process.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
    pub access: bool,
    /// Emit span-close records (`portcullis::span` target at debug).
    pub spans: bool,
}

/// Target of the gateway's spans; filter on it to enable or silence them.
pub(crate) const SPAN_TARGET: &str = "portcullis::span";

/// Installs the global subscriber. `RUST_LOG`, when set, overrides `level`.
pub(crate) fn init(settings: &LogSettings) {
    let filter = filter(
        settings.spans,
        std::env::var("RUST_LOG").ok(),
        &settings.level,
    );
    // Span-close records carry `time.busy` / `time.idle`; in JSON each record
    // (access events included) names its span and the spans above it, so
    // the `request` span's `request_id` is on every line inside a request.
    let span_events = if settings.spans {
        FmtSpan::CLOSE
    } else {
        FmtSpan::NONE
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_span_events(span_events)
        .with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging was already initialised: {e}");
    }
}

/// The filter: the spans directive, then `RUST_LOG` if it parses, else
/// `level`, else `info`. Later directives for the same target replace
/// earlier ones, which is why the spans directive goes first.
fn filter(spans: bool, rust_log: Option<String>, level: &str) -> EnvFilter {
    let spans = if spans {
        format!("{SPAN_TARGET}=debug")
    } else {
        format!("{SPAN_TARGET}=off")
    };
    let with_spans = |directives: &str| EnvFilter::try_new(format!("{spans},{directives}"));
    rust_log
        .and_then(|env| with_spans(&env).ok())
        .or_else(|| with_spans(level).ok())
        .unwrap_or_else(|| EnvFilter::new(format!("{spans},info")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    /// Whether a gateway span would be recorded under `filter`.
    fn spans_enabled(filter: EnvFilter) -> bool {
        let subscriber = tracing_subscriber::registry().with(filter);
        tracing::subscriber::with_default(subscriber, || {
            !tracing::debug_span!(target: SPAN_TARGET, "probe").is_disabled()
        })
    }

    #[test]
    fn log_spans_switches_the_span_target_on_and_off_whatever_the_level() {
        assert!(spans_enabled(filter(true, None, "info")));
        assert!(spans_enabled(filter(true, None, "warn")));
        assert!(!spans_enabled(filter(false, None, "info")));
        assert!(
            !spans_enabled(filter(false, None, "debug")),
            "a debug level alone does not turn spans on"
        );
    }

    #[test]
    fn with_spans_off_the_max_level_stays_at_the_configured_level() {
        assert_eq!(
            filter(false, None, "info").max_level_hint(),
            Some(LevelFilter::INFO)
        );
    }

    #[test]
    fn rust_log_overrides_the_level_and_an_explicit_span_directive_wins() {
        assert!(!spans_enabled(filter(
            true,
            Some("portcullis::span=off,info".into()),
            "info"
        )));
        assert!(spans_enabled(filter(
            false,
            Some("portcullis::span=debug".into()),
            "info"
        )));
        assert!(spans_enabled(filter(true, Some("error".into()), "info")));
    }

    #[test]
    fn an_unparsable_rust_log_falls_back_to_level() {
        let f = filter(false, Some("portcullis=loud".into()), "debug");
        assert_eq!(f.max_level_hint(), Some(LevelFilter::DEBUG), "{f}");
    }
}
