//! The engine's file changes under a running engine, as Kubernetes changes a mounted
//! ConfigMap (a new `..data` link renamed over the old one): new datasets are served within
//! seconds, removed ones are gone, a statement already running finishes, and a file that
//! does not load is refused, logged, with the old set kept.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::Node;
use crate::common::reqwest_lite::{Client, Reply};

/// Writes `yaml` as the next version of a ConfigMap-style folder and swaps it in.
fn publish(dir: &Path, version: u32, yaml: &str) {
    let data = dir.join(format!("..v{version}"));
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("engine.yaml"), yaml).unwrap();
    let next = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..v{version}"), &next).unwrap();
    std::fs::rename(&next, dir.join("..data")).unwrap();
    if !dir.join("engine.yaml").exists() {
        std::os::unix::fs::symlink("..data/engine.yaml", dir.join("engine.yaml")).unwrap();
    }
}

fn engine_yaml(port: u16, datasets: &[(&str, &Path)]) -> String {
    let mut yaml =
        format!("http_listen: 127.0.0.1:{port}\nflight_listen: 127.0.0.1:{}\ndemo_data: false\ndatasets:\n", port + 1);
    for (name, path) in datasets {
        yaml.push_str(&format!("  - {{name: {name}, path: {}}}\n", path.display()));
    }
    yaml
}

/// Polls until `check` holds for the answer to `sql` (within 20 s); the last answer.
async fn until(http: &Client, sql: &str, check: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = http.sql(None, sql).await;
        if check(&reply) || Instant::now() > deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_ports() -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

#[tokio::test]
async fn a_changed_file_is_served_without_a_restart_and_a_broken_one_keeps_the_old_set() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first.csv"), dir.path().join("second.csv"));
    std::fs::write(&first, "id\n1\n2\n3\n").unwrap();
    std::fs::write(&second, "id\n10\n20\n").unwrap();
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).unwrap();
    let port = free_ports();
    publish(&config_dir, 1, &engine_yaml(port, &[("first", &first)]));
    let config = config_dir.join("engine.yaml").display().to_string();
    let engine = Node::start(
        dir.path(),
        "engine",
        &["--config".into(), config, "--dangerous-dev-principal".into(), "dev".into()],
    );
    let http = Client::new(([127, 0, 0, 1], port).into());
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the engine did not start:\n{}", engine.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = until(&http, "SELECT count(*) AS n FROM first", |r| r.status == 200).await;
    assert_eq!(reply.json(), serde_json::json!([{"n": 3}]), "{}\n{}", reply.text(), engine.log());
    let absent = http.sql(None, "SELECT * FROM second").await;
    assert!(
        absent.status == 400 && absent.text().contains("table 'datafusion.public.second' not found"),
        "{}",
        absent.text()
    );

    // A statement that runs for seconds over `first`, then a version without `first` and with
    // `second`: the statement finishes with its answer, the next one sees the new set.
    let long = {
        let http = Client::new(([127, 0, 0, 1], port).into());
        tokio::spawn(async move {
            http.sql(None, "SELECT count(*) AS n FROM first, range(30000000) r WHERE r.value % 7 <> first.id").await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    publish(&config_dir, 2, &engine_yaml(port, &[("second", &second)]));
    let reply = until(&http, "SELECT sum(id) AS s FROM second", |r| r.status == 200).await;
    assert_eq!(reply.json(), serde_json::json!([{"s": 30}]), "{}\n{}", reply.text(), engine.log());
    assert!(!long.is_finished(), "the long statement ended before the reload: it proves nothing");
    let reply = long.await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), serde_json::json!([{"n": 77142857}]));
    let gone = http.sql(None, "SELECT * FROM first").await;
    assert!(gone.status == 400 && gone.text().contains("table 'datafusion.public.first' not found"), "{}", gone.text());

    // Broken versions, each with a new dataset beside what breaks it (a file that does not
    // exist, YAML that does not parse, a view that does not plan): each is refused and
    // logged, the new dataset is not served, the old set is.
    let missing = dir.path().join("missing.csv");
    let broken = [
        (engine_yaml(port, &[("second", &second), ("third", &first), ("fourth", &missing)]), "missing.csv"),
        (format!("{}  - {{name: [", engine_yaml(port, &[("second", &second), ("third", &first)])), "engine.yaml"),
        (
            format!(
                "{}views:\n  - {{name: v, sql: SELECT nope FROM second}}\n",
                engine_yaml(port, &[("second", &second), ("third", &first)])
            ),
            "nope",
        ),
    ];
    for (i, (yaml, named)) in broken.iter().enumerate() {
        let rejected = engine.log().matches("reload rejected").count();
        publish(&config_dir, 3 + i as u32, yaml);
        let deadline = Instant::now() + Duration::from_secs(20);
        while engine.log().matches("reload rejected").count() == rejected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log = engine.log();
        let line = log.lines().filter(|l| l.contains("reload rejected")).nth(rejected);
        assert!(line.is_some_and(|l| l.contains(named)), "{yaml}: no rejection naming {named}:\n{log}");
        let third = http.sql(None, "SELECT * FROM third").await;
        assert!(
            third.status == 400 && third.text().contains("'datafusion.public.third' not found"),
            "{yaml}: {}",
            third.text()
        );
        let reply = http.sql(None, "SELECT sum(id) AS s FROM second").await;
        assert_eq!(reply.json(), serde_json::json!([{"s": 30}]), "{yaml}: {}", reply.text());
    }
    // Fixed: served from the next version.
    publish(&config_dir, 9, &engine_yaml(port, &[("first", &first), ("second", &second)]));
    let reply = until(&http, "SELECT count(*) AS n FROM first", |r| r.status == 200).await;
    assert_eq!(reply.json(), serde_json::json!([{"n": 3}]), "{}", reply.text());
    // The reload metric, on the engine's loopback /metrics.
    let metrics = http.send("GET", "/metrics", &[], "").await.text();
    let count = |result: &str| -> u64 {
        let series = format!("engine_reloads_total{{what=\"engine_config\",result=\"{result}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(series.as_str())).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    // (A version's files can arrive as two bursts of changes: at least, not exactly.)
    assert!(count("rejected") >= 3 && count("ok") >= 2, "{metrics}");
}
