//! Log output (stderr): text or JSON lines, filtered by `--log-level` or `HANGAR_LOG`.

use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct LogArgs {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter: a level (error, warn, info, debug, trace) or directives such as
    /// `info,hangar=debug` (default: HANGAR_LOG, else info).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid log filter `{filter}`: {message}; use a level such as `info` or directives such as `info,hangar=debug`"
)]
pub struct FilterError {
    filter: String,
    message: String,
}

/// The filter: `--log-level`, else HANGAR_LOG, else `fallback`.
pub fn filter(args: &LogArgs, fallback: &str) -> Result<EnvFilter, FilterError> {
    let text = args
        .log_level
        .clone()
        .or_else(|| std::env::var("HANGAR_LOG").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| fallback.to_string());
    EnvFilter::try_new(&text).map_err(|e| FilterError {
        filter: text,
        message: e.to_string(),
    })
}

/// Installs the global subscriber (once, at start).
pub fn init(args: &LogArgs, fallback: &str) -> Result<(), FilterError> {
    let filter = filter(args, fallback)?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match args.log_format {
        // Colours only on a terminal, not in files or log collectors.
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_directives_are_accepted_nonsense_is_not() {
        for ok in [
            "info",
            "debug",
            "warn,hangar=trace",
            "hangar::controller=debug",
        ] {
            let a = LogArgs {
                log_level: Some(ok.into()),
                ..LogArgs::default()
            };
            assert!(filter(&a, "error").is_ok(), "{ok}");
        }
        let bad = LogArgs {
            log_level: Some("loud=[".into()),
            ..LogArgs::default()
        };
        let e = filter(&bad, "error").map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("invalid log filter `loud=[`"), "{e}");
    }
}
