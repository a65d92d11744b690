//! `loadgen`: drives the engine (and later the gateway) over HTTP and Flight SQL on loopback,
//! and reports throughput, latency percentiles and, optionally, the server's CPU per request.

fn main() -> std::process::ExitCode {
    loadtests::cli::main()
}
