//! The `falcon-lake` binary: embedded pipeline, demo, replay, checks, emulators.

fn main() -> std::process::ExitCode {
    match falcon_lake::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
