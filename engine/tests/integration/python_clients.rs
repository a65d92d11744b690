//! Real, independently written Flight SQL clients (the ADBC Flight SQL driver and
//! pyarrow.flight, from PyPI) against the engine. Needs
//! `python3 -m pip install -r engine/tests/python/requirements.txt` (done by `.ci/run`).

use crate::common::{TestEngine, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_and_pyarrow_flight_clients() {
    let engine = TestEngine::start().await;
    let python = testkit::python();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/flight_client.py");
    let output = tokio::process::Command::new(&python)
        .arg(script)
        .env("PYTHONPATH", testkit::python_path())
        .env("FLIGHT_URI", format!("grpc://{}", engine.running.flight_addr))
        .env(
            "STAMP",
            engine.listing_stamp(&user("alice", &["acme"]), &["datafusion.demo.customers", "datafusion.demo.orders"]),
        )
        .env("BOB_STAMP", engine.stamp(&user("bob", &["acme"])))
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "Flight client checks failed (install: python3 -m pip install -r engine/tests/python/requirements.txt)\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("6 passed, 0 failed"), "{stdout}");
}
