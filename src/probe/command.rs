//! `hangar probe URL`: exit 0 compliant, 1 not (requires auth, not MCP, unreachable), 2 usage.

use std::io::Write;
use std::time::Duration;

use super::{ProbeOptions, ProbeReport, TransportChoice, Verdict};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ProbeArgs {
    /// The MCP endpoint, e.g. http://127.0.0.1:8000/mcp (or the /sse URL of a legacy server).
    pub url: String,
    /// Which transport to try; `auto` follows the spec's backwards-compatibility rules.
    #[arg(long, value_enum, default_value = "auto")]
    pub transport: TransportChoice,
    /// Bound on the whole probe (e.g. 500ms, 10s).
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = crate::compile::units::parse_duration)]
    pub timeout: Duration,
    /// An extra request header, `Name: value` (repeatable); values are never printed.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Start with this protocol version (a legacy one, e.g. 2025-06-18, skips the 2026-07-28
    /// attempt).
    #[arg(long, value_name = "VERSION")]
    pub protocol_version: Option<String>,
    /// Output format on stdout.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: Output,
    /// Cap on one response body or SSE event (bytes, or with KiB/MiB); an SSE stream may carry
    /// 4x as much.
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = parse_size)]
    pub max_body: usize,
    /// Pages read per list (`tools/list`, ...) before the list is reported as truncated.
    #[arg(long, value_name = "N", default_value_t = super::MAX_PAGES as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_pages: u32,
}

/// `1048576`, `512KiB`, `16MiB`: at least 1 KiB, at most 1 GiB.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` (use a number of bytes, or KiB, MiB, GiB)"
            ));
        }
    };
    let n: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 16MiB"))?;
    let bytes = n
        .checked_mul(mult)
        .filter(|b| (1 << 10..=1 << 30).contains(b))
        .ok_or_else(|| format!("`{s}`: a size from 1KiB to 1GiB"))?;
    Ok(bytes)
}

/// Runs the subcommand; returns the exit code.
pub fn run(args: ProbeArgs) -> u8 {
    let mut opts = ProbeOptions::new(args.url.clone(), args.timeout);
    opts.transport = args.transport;
    opts.protocol_version = args.protocol_version.clone();
    opts.max_body = args.max_body;
    opts.max_pages = args.max_pages as usize;
    for h in &args.headers {
        match super::parse_header(h) {
            Ok((n, v)) => {
                opts.headers.append(n, v);
            }
            Err(e) => {
                eprintln!(
                    "error: --header: {}",
                    crate::compile::diag::printable(&e.to_string())
                );
                return 2;
            }
        }
    }
    if let Err(e) = url::Url::parse(&args.url) {
        eprintln!(
            "error: `{}` is not a URL: {e}",
            crate::compile::diag::printable(&args.url)
        );
        return 2;
    }
    let rt = match crate::connect::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let report = rt.block_on(super::probe(&opts));
    if report.error_kind == Some("invalid-url") {
        eprintln!(
            "error: {}",
            crate::compile::diag::printable(&report.errors.join("; "))
        );
        return 2;
    }
    let mut out = std::io::stdout().lock();
    let written = match args.output {
        Output::Json => serde_json::to_string_pretty(&report)
            .map_err(std::io::Error::other)
            .and_then(|s| writeln!(out, "{s}")),
        Output::Text => write!(
            out,
            "{}",
            crate::compile::diag::masked_safe(&text(&report), usize::MAX)
        ),
    };
    if let Err(e) = written {
        eprintln!("error: writing the report: {e}");
        return 2;
    }
    if report.compliant { 0 } else { 1 }
}

/// The human-readable report.
pub fn text(r: &ProbeReport) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("  {k:<17}{v}\n"));
    let head = match r.verdict {
        Verdict::Compliant => "MCP compliant".to_string(),
        Verdict::RequiresAuth => {
            "requires authentication (not compliant without credentials)".into()
        }
        Verdict::NotCompliant => "NOT MCP compliant".into(),
        Verdict::Unreachable => "unreachable".into(),
    };
    let mut out = format!("{}: {head}\n", r.url);
    if let Some(t) = r.transport {
        let state = match r.stateful {
            Some(false) => " (stateless)",
            Some(true) => " (session)",
            None => "",
        };
        line("transport", format!("{}{state}", t.as_str()));
    }
    if let Some(v) = &r.protocol_version {
        line("protocol", v.clone());
    }
    if let Some(i) = &r.server_info {
        line(
            "server",
            format!(
                "{} {}",
                i.name.as_deref().unwrap_or("?"),
                i.version.as_deref().unwrap_or("?")
            )
            .trim_end()
            .to_string(),
        );
    }
    if r.transport.is_some() {
        line("capabilities", list(&r.capabilities));
        line(&format!("tools ({})", r.tools.len()), list(&r.tools));
    }
    if let Some(n) = r.resources_count {
        line("resources", n.to_string());
    }
    if let Some(n) = r.prompts_count {
        line("prompts", n.to_string());
    }
    if let Some(w) = &r.www_authenticate {
        line("www-authenticate", w.clone());
    }
    line("latency", format!("{} ms", r.latency_ms));
    for d in &r.detection {
        line("detection", d.clone());
    }
    for w in &r.warnings {
        line("warning", w.clone());
    }
    for e in &r.errors {
        line("error", e.clone());
    }
    out.push_str(&s);
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}
