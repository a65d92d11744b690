//! Per-request cost of identity stamps: the cached paths every request takes, next to the
//! signature operations they avoid.
//!
//! Run: `cargo bench -p identity --bench stamp`
#![allow(clippy::expect_used, clippy::indexing_slicing, clippy::panic)] // a benchmark with a broken setup should stop loudly

use criterion::{Criterion, criterion_group, criterion_main};
use identity::{AuthMethod, Principal, PrincipalKind, StampIssuer, StampSigner, StampVerifier};
use std::hint::black_box;

fn principal() -> Principal {
    let mut p = Principal::new(PrincipalKind::User, "alice", "00u1abcd", AuthMethod::Oidc);
    p.email = Some("alice@acme.example".into());
    p.groups = vec!["acme".into(), "analysts".into(), "readers".into()];
    p.issuer = Some("https://idp.acme.example".into());
    p
}

fn bench(c: &mut Criterion) {
    let pair = identity::generate_stamp_keypair().expect("keygen");
    let sign = || StampSigner::from_pem(pair.private_pkcs8_pem.as_bytes(), "portcullis-engine").expect("signer");
    let verifier = |cap| {
        StampVerifier::from_pems([pair.public_spki_pem.as_bytes()], "portcullis-engine", 5, cap).expect("verifier")
    };
    let p = principal();
    let signer = sign();
    let stamp = signer.sign(&p, identity_now(), 60).expect("sign");

    c.bench_function("stamp/sign (issuer miss)", |b| b.iter(|| signer.sign(black_box(&p), identity_now(), 60)));
    let issuer = StampIssuer::new(sign(), 60, 1024);
    let policy: std::sync::Arc<str> = std::sync::Arc::from("policy-fingerprint");
    let scope =
        |name: &str| -> std::sync::Arc<[String]> { std::sync::Arc::from(vec![format!("datafusion.public.{name}")]) };
    let bank = scope("bank");
    let open: std::sync::Arc<[identity::DatasetPolicy]> = std::sync::Arc::from(Vec::new());
    c.bench_function("stamp/issue (issuer hit)", |b| {
        b.iter(|| issuer.stamp_for(black_box(&p), &policy, &bank, &open, &None))
    });
    // A caller whose statements touch eight different dataset sets, asking for the last
    // (an equal scope from another allocation, as each verdict builds its own).
    for i in 0..8 {
        issuer.stamp_for(&p, &policy, &scope(&format!("t{i}")), &open, &None).expect("sign");
    }
    let last = scope("t7");
    c.bench_function("stamp/issue (issuer hit, 8 scopes)", |b| {
        b.iter(|| issuer.stamp_for(black_box(&p), &policy, &last, &open, &None))
    });

    // A capacity-1 cache that alternates two stamps never hits: the full verify.
    let other = signer.sign(&p, identity_now() - 1, 60).expect("sign");
    let cold = verifier(1);
    let mut flip = false;
    c.bench_function("stamp/verify (cache miss)", |b| {
        b.iter(|| {
            flip = !flip;
            cold.verify(black_box(if flip { &stamp } else { &other }))
        })
    });
    let warm = verifier(1024);
    warm.verify(&stamp).expect("valid");
    c.bench_function("stamp/verify (cache hit)", |b| b.iter(|| warm.verify(black_box(&stamp))));
}

fn identity_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

criterion_group!(benches, bench);
criterion_main!(benches);
