//! `gateway`: see `gateway --help` and the README.

fn main() -> std::process::ExitCode {
    gateway::cli::main()
}
