//! Real TLS handshakes against the gateway: client-certificate modes, foreign and expired
//! certificates, protocol versions, and certificate hot reload.

use crate::common;

use std::io::{Read, Write};
use std::time::Duration;

use crate::common::{Client, Stack};
use gateway::config::ClientAuth;

#[tokio::test]
async fn required_mode_refuses_handshakes_without_a_valid_certificate() {
    let stack = Stack::start(ClientAuth::Required).await;
    let addr = stack.gateway.api_addr;
    // No certificate, another CA's certificate, an expired certificate: no TLS session at all.
    for leaf in [None, Some("stranger"), Some("expired")] {
        let result = stack.client(leaf).sql(addr, "SELECT 1").await;
        assert!(result.is_err(), "{leaf:?} was served: {:?}", result.map(|r| r.status));
    }
    // A valid certificate is served, as its SPIFFE ID.
    let reply = stack.client(Some("workload")).sql(addr, "SELECT current_principal() AS p").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()[0]["p"], "spiffe://test.example/ns/etl/sa/loader");
}

#[tokio::test]
async fn optional_mode_answers_401_without_a_certificate() {
    let stack = Stack::start(ClientAuth::Optional).await;
    let addr = stack.gateway.api_addr;
    let reply = stack.client(None).sql(addr, "SELECT 1").await.unwrap();
    assert_eq!(reply.status, 401);
    assert_eq!(reply.json()["error"]["code"], "unauthenticated");
    assert!(reply.headers.contains_key("x-request-id"));
    // Presented but invalid certificates still fail the handshake.
    assert!(stack.client(Some("stranger")).sql(addr, "SELECT 1").await.is_err());
    assert!(stack.client(Some("expired")).sql(addr, "SELECT 1").await.is_err());
    // Email SAN when there is no SPIFFE ID.
    let reply = stack
        .client(Some("mailer"))
        .sql(addr, "SELECT current_principal() AS p, current_principal_email() AS e")
        .await
        .unwrap();
    assert_eq!(reply.json()[0]["p"], "mailer@example.com");
    assert_eq!(reply.json()[0]["e"], "mailer@example.com");
}

#[tokio::test]
async fn no_authentication_method_is_a_config_error() {
    let pki = common::Pki::new();
    let (key, _) = common::stamp_keys(pki.path());
    let config =
        common::gateway_config(&pki, ClientAuth::None, "http://127.0.0.1:1".into(), "http://127.0.0.1:2".into(), key);
    let err = gateway::server::prepare(config).unwrap_err().to_string();
    assert!(err.contains("tls.client_auth"), "{err}");
}

/// A minimal ClientHello offering only `version` (no supported_versions extension), with
/// TLS 1.2-era ECDHE-ECDSA/RSA AES-GCM suites; returns the first record type the server sends
/// (22 handshake = ServerHello, 21 alert).
fn first_record_type(addr: std::net::SocketAddr, version: [u8; 2]) -> u8 {
    let mut body = Vec::new();
    body.extend_from_slice(&version); // client_version
    body.extend_from_slice(&[7u8; 32]); // random
    body.push(0); // session id
    let suites: [u8; 8] = [0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30];
    body.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    body.extend_from_slice(&suites);
    body.extend_from_slice(&[1, 0]); // compression: null
    // extensions: supported_groups (x25519, secp256r1), ec_point_formats, signature_algorithms, server_name
    let mut ext = Vec::new();
    ext.extend_from_slice(&[0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]);
    ext.extend_from_slice(&[0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]);
    ext.extend_from_slice(&[0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01]);
    let host = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&((host.len() + 3) as u16).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    ext.extend_from_slice(&[0x00, 0x00]);
    ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    ext.extend_from_slice(&sni);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut handshake = vec![1u8, 0, 0, 0];
    handshake[1..4].copy_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22u8, version[0], version[1]];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(&record).unwrap();
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(1) => first[0],
        _ => 0, // closed without a record
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_0_and_1_1_are_refused_and_1_2_accepted() {
    let stack = Stack::start(ClientAuth::Optional).await;
    let addr = stack.gateway.api_addr;
    let probe = |v| tokio::task::spawn_blocking(move || first_record_type(addr, v));
    assert_eq!(probe([3, 1]).await.unwrap(), 21, "TLS 1.0 must get an alert");
    assert_eq!(probe([3, 2]).await.unwrap(), 21, "TLS 1.1 must get an alert");
    // The same hello at TLS 1.2 gets a ServerHello: the probe itself is sound.
    assert_eq!(probe([3, 3]).await.unwrap(), 22, "TLS 1.2 must be accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_s_client_cannot_negotiate_old_protocols() {
    let stack = Stack::start(ClientAuth::Optional).await;
    let target = format!("127.0.0.1:{}", stack.gateway.api_addr.port());
    let run = |flag: &'static str| {
        let target = target.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new("openssl")
                .args([
                    "s_client",
                    "-connect",
                    &target,
                    flag,
                    "-cipher",
                    "DEFAULT:@SECLEVEL=0",
                    "-servername",
                    "localhost",
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .expect("openssl is installed (.ci/run installs it)")
        })
    };
    for flag in ["-tls1", "-tls1_1"] {
        let out = run(flag).await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        // s_client's exit status does not tell; its report does.
        assert!(text.contains("no peer certificate available"), "{flag} negotiated: {text}");
        assert!(text.contains("Cipher is (NONE)"), "{flag}: {text}");
    }
    let out = run("-tls1_2").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TLSv1.2"), "TLS 1.2 should negotiate: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_hot_reload_switches_the_served_certificate() {
    let stack = Stack::start(ClientAuth::Optional).await;
    let addr = stack.gateway.api_addr;
    let before = common::served_certificate(&stack.pki, addr).await;
    // A held-open connection survives the reload.
    let open = stack.client(Some("workload"));
    let kept = open.connect(addr).await.unwrap();

    // A broken file is rejected; the old certificate keeps serving.
    let (cert_path, _) = stack.pki.leaf("server");
    let good = std::fs::read(&cert_path).unwrap();
    std::fs::write(&cert_path, b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(common::served_certificate(&stack.pki, addr).await, before);
    std::fs::write(&cert_path, &good).unwrap();

    // Issue a new server certificate in place: new connections get it.
    stack.pki.reissue_server();
    assert!(common::certificate_changes(&stack.pki, addr, &before).await, "the new certificate was not picked up");
    drop(kept);
    let reply = stack.client(Some("workload")).sql(addr, "SELECT 1 AS one").await.unwrap();
    assert_eq!(reply.status, 200);
}

/// Lays out `dir` the way the kubelet projects a Secret: the files live in a timestamped
/// folder, `..data` links to it, and each name links through `..data`.
fn project_secret(dir: &std::path::Path, version: &str, files: &[(&str, &std::path::Path)]) {
    let folder = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&folder).unwrap();
    for (name, source) in files {
        std::fs::copy(source, folder.join(name)).unwrap();
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
    // The kubelet's atomic swap: a new link, renamed over the old one.
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_secret_rotation_by_data_symlink_swap_is_picked_up() {
    let stack = Stack::start_with(ClientAuth::Optional, |config| {
        let cert = config.tls.certificate_file.clone().unwrap();
        let key = config.tls.key_file.clone().unwrap();
        let secret = cert.parent().unwrap().join("secret");
        project_secret(&secret, "2026_12_01_00_00_00.1", &[("tls.crt", &cert), ("tls.key", &key)]);
        config.tls.certificate_file = Some(secret.join("tls.crt").into());
        config.tls.key_file = Some(secret.join("tls.key").into());
    })
    .await;
    let addr = stack.gateway.api_addr;
    let before = common::served_certificate(&stack.pki, addr).await;
    let (cert, key) = stack.pki.leaf("server");
    stack.pki.reissue_server();
    // Nothing the gateway reads changed yet: the new files are outside the projected folder.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(common::served_certificate(&stack.pki, addr).await, before);
    project_secret(&stack.pki.path().join("secret"), "2026_12_01_01_00_00.2", &[("tls.crt", &cert), ("tls.key", &key)]);
    assert!(common::certificate_changes(&stack.pki, addr, &before).await, "the rotated Secret was not picked up");
    let reply = stack.client(Some("workload")).sql(addr, "SELECT 1 AS one").await.unwrap();
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn revoked_client_certificates_are_refused_when_a_crl_is_configured() {
    let pki = common::Pki::new();
    let crl = gateway::internal::pki::revoke(pki.path(), &["workload".to_string()]).unwrap();
    let (key, _) = common::stamp_keys(pki.path());
    let mut config = common::gateway_config(
        &pki,
        ClientAuth::Required,
        "http://127.0.0.1:9".into(),
        "http://127.0.0.1:9".into(),
        key,
    );
    config.tls.crl_files = vec![crl.into()];
    let gateway = gateway::server::start(gateway::server::prepare(config).unwrap()).await.unwrap();
    assert!(
        Client::new(&pki, Some("workload")).sql(gateway.api_addr, "SELECT 1").await.is_err(),
        "revoked certificate served"
    );
    // A certificate not on the list still completes the handshake (and meets the closed upstream).
    let reply = Client::new(&pki, Some("mailer")).sql(gateway.api_addr, "SELECT 1").await.unwrap();
    assert_eq!(reply.status, 502);
}
