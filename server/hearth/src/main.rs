//! The `hearth` binary: parse flags, start logging, run the command, turn its
//! error into a message on stderr and an exit code. Everything else is in the
//! library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hearth::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    hearth::telemetry::init(cli.effective_log_format());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout();
    match runtime.block_on(cli::run(cli, &mut stdout, hearth::shutdown::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = stdout.flush();
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
