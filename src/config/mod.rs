//! Configuration: the YAML model, `${ENV}` interpolation, and compilation
//! into a [`Generation`]. Every problem is reported as `file:line:column:
//! message`, all of them at once, each saying what to do.

pub(crate) mod compile;
pub mod defaults;
pub(crate) mod interpolate;
pub(crate) mod raw;
pub(crate) mod units;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::generation::Generation;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The config file, as passed to [`load`].
    pub file: PathBuf,
    /// 1-based line; 0 when the problem has no single place (the whole
    /// file, or something missing), and then no `line:column` is printed.
    pub line: usize,
    /// 1-based column; 0 together with `line`.
    pub column: usize,
    /// What is wrong and, where there is something to do, what to do.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        }
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone)]
pub struct ConfigError(pub Vec<Diagnostic>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads, interpolates, parses and compiles the config at `path`.
pub fn load(path: &Path) -> Result<Generation, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![Diagnostic {
            file: path.to_owned(),
            line: 0,
            column: 0,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    load_str(path, &text, |name| std::env::var(name).ok())
}

/// Like [`load`] for text already in memory; `env` resolves `${VAR}`.
pub fn load_str(
    path: &Path,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Generation, ConfigError> {
    let at = |line, column, message| Diagnostic {
        file: path.to_owned(),
        line,
        column,
        message,
    };
    let text = interpolate::interpolate(text, env).map_err(|errs| {
        ConfigError(
            errs.into_iter()
                .map(|e| at(e.line, e.column, e.message))
                .collect(),
        )
    })?;
    let raw: raw::RawConfig = serde_saphyr::from_str(&text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line() as usize, l.column() as usize))
            .unwrap_or((0, 0));
        ConfigError(vec![at(line, column, parse_message(&e))])
    })?;
    compile::compile(path, raw)
}

/// The parser's message without its own location prefix or source snippet
/// (we print `file:line:col:` ourselves).
fn parse_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // Drop the parser's own "line X column Y: " prefix or " at line X column Y" suffix.
    let first = match first.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map(|(_, m)| m).unwrap_or(first),
        None => first,
    };
    match first.rfind(" at line ") {
        Some(i) => first[..i].to_owned(),
        None => first.to_owned(),
    }
}
