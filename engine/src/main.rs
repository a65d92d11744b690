//! `engine`: see `engine --help` and the README.

fn main() -> std::process::ExitCode {
    engine::cli::main()
}
