//! Real, independently written Flight SQL clients (the ADBC Flight SQL driver and
//! pyarrow.flight, from PyPI) against the engine. Needs
//! `python3 -m pip install -r engine/tests/python/requirements.txt` (done by `.ci/run`).

use crate::common::{TestEngine, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_and_pyarrow_flight_clients() {
    let engine = TestEngine::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight_client.py");
    let output = tokio::process::Command::from(testkit::python_command())
        .arg(script)
        .env("FLIGHT_URI", format!("grpc://{}", engine.running.flight_addr))
        .env(
            "STAMP",
            engine.listing_stamp(&user("alice", &["acme"]), &["datafusion.demo.customers", "datafusion.demo.orders"]),
        )
        .env("BOB_STAMP", engine.stamp(&user("bob", &["acme"])))
        .output()
        .await
        .unwrap();
    let stdout = testkit::python_stdout(
        &output,
        "Flight client checks (install: python3 -m pip install -r engine/tests/python/requirements.txt)",
    );
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
}
