//! Rate limits end to end: per IP, per principal with a group override, the failed-auth
//! block against brute force (while another address is served), and the gRPC status.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::common::{Reply, Stack};
use gateway::config::{ApiKeyEntry, ApiKeysConfig, ClientAuth, QuotaConfig, RateLimitConfig};
use gateway::internal::apikeys;

fn per_minute(requests: u32) -> QuotaConfig {
    QuotaConfig { requests, per_secs: 60, burst: None }
}

/// A stack with two API keys: `plain` and `loader` (group `etl`).
async fn stack(limits: RateLimitConfig) -> (Stack, String, String) {
    let plain = apikeys::generate().unwrap();
    let loader = apikeys::generate().unwrap();
    let entry = |name: &str, hash: &str, groups: Vec<String>| ApiKeyEntry {
        name: name.into(),
        hash: hash.into(),
        groups,
        tenant: None,
        expires: None,
    };
    let keys = vec![entry("plain", &plain.hash, vec![]), entry("loader", &loader.hash, vec!["etl".into()])];
    let stack = Stack::start_with(ClientAuth::Optional, move |c| {
        c.auth.api_keys = Some(ApiKeysConfig { file: None, keys });
        c.rate_limits = limits;
    })
    .await;
    (stack, plain.key, loader.key)
}

async fn select(stack: &Stack, from: Option<IpAddr>, key: &str) -> Reply {
    let mut client = stack.client(None);
    client.local_ip = from;
    client.request(stack.gateway.api_addr, "POST", "/v1/sql", &[("x-api-key", key)], "SELECT 1").await.unwrap()
}

fn assert_limited(reply: &Reply, limiter: &str) {
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "rate_limited");
    assert!(reply.json()["error"]["message"].as_str().unwrap().contains(limiter), "{}", reply.text());
    let retry: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    assert_eq!(reply.headers["ratelimit-remaining"], "0");
}

#[tokio::test]
async fn per_ip_limit_answers_429_with_retry_after_and_grpc_resource_exhausted() {
    let (stack, key, _) = stack(RateLimitConfig { per_ip: Some(per_minute(5)), ..Default::default() }).await;
    for _ in 0..5 {
        assert_eq!(select(&stack, None, &key).await.status, 200);
    }
    let reply = select(&stack, None, &key).await;
    assert_limited(&reply, "ip");
    assert_eq!(reply.headers["ratelimit-limit"], "5");
    // Another address has its own quota.
    assert_eq!(select(&stack, Some(IpAddr::from([127, 0, 0, 2])), &key).await.status, 200);
    // The Flight listener shares the per-IP limiter: gRPC gets RESOURCE_EXHAUSTED (8).
    let head = stack.grpc_head("ListActions", &[("x-api-key", &key)], bytes::Bytes::from_static(&[0; 5])).await;
    assert_eq!(head["grpc-status"], "8");
    assert!(head["grpc-message"].to_str().unwrap().contains("rate limit exceeded"));
}

#[tokio::test]
async fn per_principal_limit_with_a_group_override() {
    let limits = RateLimitConfig {
        per_principal: Some(per_minute(2)),
        groups: HashMap::from([("etl".to_string(), per_minute(6))]),
        ..Default::default()
    };
    let (stack, plain, loader) = stack(limits).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(select(&stack, None, &plain).await.status);
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_limited(&select(&stack, None, &plain).await, "principal");
    let mut allowed = 0;
    while select(&stack, None, &loader).await.status == 200 {
        allowed += 1;
        assert!(allowed <= 6, "the group override was not applied");
    }
    assert_eq!(allowed, 6);
}

#[tokio::test]
async fn brute_force_is_blocked_while_another_address_is_served() {
    let limits = RateLimitConfig { failed_auth_per_ip: Some(per_minute(3)), ..Default::default() };
    let (stack, key, _) = stack(limits).await;
    let attacker = Some(IpAddr::from([127, 0, 0, 3]));
    let guesses: Vec<String> = (0..6).map(|_| apikeys::generate().unwrap().key).collect();
    let mut statuses = Vec::new();
    for guess in &guesses {
        statuses.push(select(&stack, attacker, guess).await.status);
    }
    // Three failures are allowed, the fourth blocks the address: no more guesses are checked.
    assert_eq!(statuses, [401, 401, 401, 401, 429, 429]);
    // Requests without credentials are not failed sign-ins (probes elsewhere are not blocked).
    let probe = Some(IpAddr::from([127, 0, 0, 5]));
    for _ in 0..5 {
        let mut client = stack.client(None);
        client.local_ip = probe;
        let reply = client.request(stack.gateway.api_addr, "POST", "/v1/sql", &[], "SELECT 1").await.unwrap();
        assert_eq!(reply.status, 401);
    }
    // Even the right key is refused from that address for now...
    assert_limited(&select(&stack, attacker, &key).await, "failed_auth");
    // ...while a legitimate client elsewhere is served.
    assert_eq!(select(&stack, Some(IpAddr::from([127, 0, 0, 4])), &key).await.status, 200);
}

#[tokio::test]
async fn quotas_reload_when_the_config_file_changes() {
    // Only `rate_limits` is read on reload; the rest must parse but is not applied.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.yaml");
    let config = |requests: u32| {
        format!(
            "tls: {{certificate_file: c.pem, key_file: k.pem}}\nstamp: {{key_file: s.pem}}\nauthorization: {{policies: p}}\n\
             rate_limits:\n  per_principal: {{requests: {requests}, per_secs: 60}}\n"
        )
    };
    std::fs::write(&file, config(1000)).unwrap();
    let source = file.clone();
    let (stack, key, _) = {
        let plain = apikeys::generate().unwrap();
        let keys = vec![ApiKeyEntry {
            name: "plain".into(),
            hash: plain.hash.clone(),
            groups: vec![],
            tenant: None,
            expires: None,
        }];
        let stack = Stack::start_with(ClientAuth::Optional, move |c| {
            c.auth.api_keys = Some(ApiKeysConfig { file: None, keys });
            c.rate_limits = RateLimitConfig { per_principal: Some(per_minute(1000)), ..Default::default() };
            c.source = Some(source);
        })
        .await;
        (stack, plain.key, ())
    };
    for _ in 0..3 {
        assert_eq!(select(&stack, None, &key).await.status, 200);
    }
    // A bad file is refused: the old quotas stay.
    std::fs::write(&file, "rate_limits: {per_principal: {requests: 0}}\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(select(&stack, None, &key).await.status, 200);
    // Two requests a minute: the new quota applies (afresh) once the file is read again.
    std::fs::write(&file, config(2)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if select(&stack, None, &key).await.status == 429 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new quota was never applied");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_limited(&select(&stack, None, &key).await, "principal");
}
