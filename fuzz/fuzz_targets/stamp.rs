//! Identity-stamp verification: whatever arrives in `x-portcullis-stamp` is refused unless
//! the gateway's key signed it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn verifier() -> &'static identity::StampVerifier {
    static VERIFIER: OnceLock<identity::StampVerifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let pair = identity::generate_stamp_keypair().expect("a key pair");
        identity::StampVerifier::from_pems([pair.public_spki_pem.as_bytes()], identity::DEFAULT_AUDIENCE, 2, 100)
            .expect("a verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(stamp) = std::str::from_utf8(data) {
        assert!(verifier().verify_at(stamp, 1_800_000_000).is_err(), "a forged stamp verified");
    }
});
