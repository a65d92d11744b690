//! Sealing: AES-256-GCM (aws-lc-rs) under a key ring. The first key seals, every key opens,
//! so a key rotates without signing anybody out. A sealed value is
//! `base64url(key id ‖ nonce ‖ ciphertext ‖ tag)`; the key id is 4 bytes of the key's
//! SHA-256 (it names the key, it reveals nothing of it), and the cookie's name is
//! authenticated with the value so one sealed cookie cannot stand in for another (a wrong
//! key id picks a wrong key, which fails authentication too).

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::config::{ConfigError, Reference};

const KEY_ID_LEN: usize = 4;
const TAG_LEN: usize = 16;
/// Larger cookies are not opened (browsers keep at most ~4 KiB per cookie anyway).
pub(super) const MAX_SEALED_LEN: usize = 4096;

/// Why a sealed value did not open. No variant says more than the category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("not a sealed value")]
    Malformed,
    #[error("sealed with a key this gateway does not have")]
    UnknownKey,
    #[error("tampered with (authentication failed)")]
    Tampered,
}

struct Key {
    id: [u8; KEY_ID_LEN],
    key: RandomizedNonceKey,
}

pub struct KeyRing {
    keys: Vec<Key>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Each reference resolves to 32 bytes in base64. Errors name the setting, never a key.
    pub fn from_config(keys: &[Reference], field: &str) -> Result<Self, ConfigError> {
        if keys.is_empty() {
            return Err(ConfigError::new(field, "at least one key is required (gateway session-key new)"));
        }
        let mut ring = Vec::new();
        for (i, reference) in keys.iter().enumerate() {
            let field = format!("{field}[{i}]");
            let text = reference.resolve_secret(&field)?;
            let bytes = STANDARD
                .decode(text.trim())
                .map_err(|_| ConfigError::new(&field, "not base64 (gateway session-key new prints one)"))?;
            ring.push(Self::key(&bytes).ok_or_else(|| ConfigError::new(&field, "a key is 32 bytes"))?);
        }
        for (i, key) in ring.iter().enumerate() {
            if ring.iter().take(i).any(|other| other.id == key.id) {
                return Err(ConfigError::new(format!("{field}[{i}]"), "the same key twice"));
            }
        }
        Ok(Self { keys: ring })
    }

    /// A ring of raw 32-byte keys, the first one sealing (tests and benchmarks).
    pub fn from_raw(keys: &[[u8; 32]]) -> Option<Self> {
        let keys = keys.iter().map(|k| Self::key(k)).collect::<Option<Vec<_>>>()?;
        (!keys.is_empty()).then_some(Self { keys })
    }

    fn key(bytes: &[u8]) -> Option<Key> {
        if bytes.len() != 32 {
            return None;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(digest.as_ref().get(..KEY_ID_LEN)?);
        Some(Key { id, key: RandomizedNonceKey::new(&AES_256_GCM, bytes).ok()? })
    }

    /// Seals `plaintext` under the first key, bound to `context` (the cookie's name).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Option<String> {
        let key = self.keys.first()?;
        let mut in_out = plaintext.to_vec();
        let nonce = key.key.seal_in_place_append_tag(Aad::from(context.as_bytes()), &mut in_out).ok()?;
        let mut sealed = Vec::with_capacity(KEY_ID_LEN + NONCE_LEN + in_out.len());
        sealed.extend_from_slice(&key.id);
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Some(URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Opens a value sealed by [`KeyRing::seal`] under any key of the ring (the tests' view of
    /// [`Self::open_with`]).
    #[cfg(test)]
    pub fn open(&self, context: &str, sealed: &str) -> Result<Vec<u8>, OpenError> {
        self.open_with(context, sealed, <[u8]>::to_vec)
    }

    /// [`Self::open`], handing the plaintext to `read` where it was decrypted (no copy).
    pub fn open_with<T>(&self, context: &str, sealed: &str, read: impl FnOnce(&[u8]) -> T) -> Result<T, OpenError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(OpenError::Malformed);
        }
        let mut bytes = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| OpenError::Malformed)?;
        let (head, ciphertext) = bytes.split_at_mut_checked(KEY_ID_LEN + NONCE_LEN).ok_or(OpenError::Malformed)?;
        if ciphertext.len() < TAG_LEN {
            return Err(OpenError::Malformed);
        }
        let (id, nonce) = head.split_at(KEY_ID_LEN);
        let key = self.keys.iter().find(|k| k.id == id).ok_or(OpenError::UnknownKey)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| OpenError::Malformed)?;
        let plaintext =
            key.key.open_in_place(nonce, Aad::from(context.as_bytes()), ciphertext).map_err(|_| OpenError::Tampered)?;
        Ok(read(plaintext))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_open_under_any_key_of_the_ring_and_nothing_else() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let before = KeyRing::from_raw(&[old]).unwrap();
        let during = KeyRing::from_raw(&[new, old]).unwrap();
        let after = KeyRing::from_raw(&[new]).unwrap();
        let sealed = before.seal("c", b"hello").unwrap();
        assert_eq!(during.open("c", &sealed).unwrap(), b"hello");
        assert_eq!(after.open("c", &sealed), Err(OpenError::UnknownKey));
        let resealed = during.seal("c", b"hello").unwrap();
        assert_eq!(after.open("c", &resealed).unwrap(), b"hello");
        // Bound to the context: the same value under another cookie name does not open.
        assert_eq!(during.open("other", &resealed), Err(OpenError::Tampered));
        // Two seals of one value differ (random nonces).
        assert_ne!(during.seal("c", b"hello"), during.seal("c", b"hello"));
    }

    #[test]
    fn every_flipped_bit_is_refused() {
        let ring = KeyRing::from_raw(&[[7u8; 32]]).unwrap();
        let sealed = URL_SAFE_NO_PAD.decode(ring.seal("c", b"{\"id\":\"alice\"}").unwrap()).unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                let err = ring.open("c", &URL_SAFE_NO_PAD.encode(&bad)).unwrap_err();
                let expected = if i < KEY_ID_LEN { OpenError::UnknownKey } else { OpenError::Tampered };
                assert_eq!(err, expected, "byte {i} bit {bit}");
            }
        }
        for bad in ["", "!!!", "AAAA", &"A".repeat(MAX_SEALED_LEN + 1)] {
            assert_eq!(ring.open("c", bad), Err(OpenError::Malformed), "{bad:.10}");
        }
    }

    #[test]
    fn configured_keys_are_checked() {
        let field = "auth.browser_sessions.keys";
        let err = KeyRing::from_config(&[], field).unwrap_err().to_string();
        assert!(err.contains("at least one key"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).unwrap();
            Reference::new(format!("${{file:{}}}", dir.path().join(name).display()))
        };
        let inline = STANDARD.encode([9u8; 32]);
        let err = KeyRing::from_config(&[Reference::new(inline.as_str())], field).unwrap_err().to_string();
        assert!(err.contains("by reference") && !err.contains(&inline), "{err}");
        let err = KeyRing::from_config(&[file("short", "c2hvcnQ=")], field).unwrap_err().to_string();
        assert!(err.contains("32 bytes") && !err.contains("c2hvcnQ"), "{err}");
        let key = file("key", &format!("{inline}\n"));
        let err = KeyRing::from_config(&[key.clone(), key.clone()], field).unwrap_err().to_string();
        assert!(err.contains("the same key twice"), "{err}");
        assert!(KeyRing::from_config(&[key], field).is_ok());
    }
}
