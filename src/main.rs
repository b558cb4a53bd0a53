#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("HANGAR_LOG"))
        .with_writer(std::io::stderr)
        .init();
    hangar::cli::run(hangar::cli::Cli::parse())
}
