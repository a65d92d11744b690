//! `engine`: see `engine --help` and docs/engine.md.

fn main() -> std::process::ExitCode {
    engine::cli::main()
}
