#![forbid(unsafe_code)]

use clap::Parser;

// The compiler allocates many small objects; mimalloc makes that several times cheaper than the
// system allocator (see benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = hangar::cli::Cli::parse();
    // The controller and the gateway are services: it logs at info unless told otherwise. The other commands
    // print their results and only log errors.
    let (log, fallback) = match &cli.command {
        hangar::cli::Command::Controller(args) => (args.log.clone(), "info"),
        hangar::cli::Command::Gateway { gateway, .. } => (gateway.log.clone(), "info"),
        _ => (hangar::logging::LogArgs::default(), "error"),
    };
    if let Err(e) = hangar::logging::init(&log, fallback) {
        eprintln!("error: {e}");
        return std::process::ExitCode::from(2);
    }
    hangar::cli::run(cli)
}
