#![forbid(unsafe_code)]

use clap::Parser;

// The compiler allocates many small objects; mimalloc makes that several times cheaper than the
// system allocator (see benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("HANGAR_LOG"))
        .with_writer(std::io::stderr)
        .init();
    hangar::cli::run(hangar::cli::Cli::parse())
}
