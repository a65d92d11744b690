//! `gateway`: see `gateway --help` and docs/gateway.md.

fn main() -> std::process::ExitCode {
    gateway::main()
}
