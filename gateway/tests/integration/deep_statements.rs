//! No single statement takes a process down: the deep-expression sweep
//! (`tests/python/deep_sql.py`) against real `gateway` and `engine` processes, with the
//! stacks their own runtimes give them (an in-process stack would test the harness's).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cli::{free_port, spawn_up};

/// Kills the child when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn no_statement_aborts_the_gateway_or_the_engine() {
    let state = tempfile::tempdir().unwrap();
    let ports: Vec<String> = (0..5).map(|_| format!("127.0.0.1:{}", free_port())).collect();
    let (up, printed) = spawn_up(state.path(), &ports);
    let up = Killed(up);
    let key_at = printed.find("X-API-Key: pcl_").unwrap() + "X-API-Key: ".len();
    let key: String = printed[key_at..].chars().take_while(|c| *c != '\'').collect();

    let engine_bin = std::path::Path::new(env!("CARGO_BIN_EXE_gateway")).with_file_name("engine");
    let (engine_http, engine_flight) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let engine = Killed(
        Command::new(&engine_bin)
            .args(["--dangerous-dev-principal", "mallory", "--http-listen", &engine_http])
            .args(["--flight-listen", &engine_flight])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        std::net::TcpStream::connect(&engine_flight).is_ok() && std::net::TcpStream::connect(&engine_http).is_ok()
    });
    assert!(ready, "the engine did not start");

    let api_port = ports[0].rsplit(':').next().unwrap();
    let flight_port = ports[1].rsplit(':').next().unwrap();
    let output = testkit::python_command()
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/deep_sql.py"))
        .env("GATEWAY_URL", format!("https://localhost:{api_port}"))
        .env("GATEWAY_FLIGHT", format!("grpc+tls://localhost:{flight_port}"))
        .env("CA_FILE", state.path().join("tls/ca.pem"))
        .env("API_KEY", &key)
        .env("ENGINE_URL", format!("http://{engine_http}"))
        .env("ENGINE_FLIGHT", format!("grpc://{engine_flight}"))
        .env("MAX_OPERATORS", complexity::MAX_OPERATORS.to_string())
        .env("MAX_NESTING", complexity::MAX_NESTING.to_string())
        .env("MAX_CASE_NESTING", complexity::MAX_CASE_NESTING.to_string())
        .env("MAX_DATASETS", complexity::MAX_DATASETS.to_string())
        .env("MAX_LIST_ITEMS", complexity::MAX_LIST_ITEMS.to_string())
        .output()
        .unwrap();
    let stdout = testkit::python_stdout(&output, "deep statement checks");
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    // Both processes are the ones that started: nothing was restarted behind the test's back.
    let mut up = up;
    let mut engine = engine;
    assert!(up.0.try_wait().unwrap().is_none(), "gateway up exited");
    assert!(engine.0.try_wait().unwrap().is_none(), "the engine exited");
}
