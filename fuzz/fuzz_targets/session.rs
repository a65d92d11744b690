//! The browser session cookie: whatever a client sends as `__Host-portcullis-session` is
//! opened without a panic and never accepted unless the gateway sealed it; what the gateway
//! seals opens to the same session.
#![no_main]

use std::sync::OnceLock;

use gateway::internal::{KeyRing, Sessions};
use identity::{AuthMethod, Principal, PrincipalKind};
use libfuzzer_sys::fuzz_target;

fn sessions() -> &'static Sessions {
    static SESSIONS: OnceLock<Sessions> = OnceLock::new();
    SESSIONS.get_or_init(|| Sessions::new(KeyRing::from_raw(&[[7u8; 32]]).expect("a key"), 8 * 3600, 3600))
}

fuzz_target!(|data: &[u8]| {
    let now = 1_800_000_000;
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(sessions().open(text, now).is_err(), "a cookie the gateway did not seal was accepted");
        // Anything as a principal's fields survives sealing and opening unchanged.
        let mut principal = Principal::new(PrincipalKind::User, text, text, AuthMethod::Browser);
        principal.groups = text.split(',').map(str::to_string).collect();
        let session = sessions().start(principal.clone(), text, now).expect("randomness");
        let sealed = sessions().cookie(&session);
        if let Some(cookie) = sealed {
            let value =
                cookie.to_str().expect("ascii").split(';').next().expect("a pair").split_once('=').expect("=").1;
            let opened = sessions().open(value, now).expect("a sealed session opens");
            assert_eq!(*opened.principal, principal);
        }
    }
});
