//! A JSON object writer for audit lines: keys are the event schema's own literals, written
//! as they are; string values are copied as they are when nothing in them needs escaping
//! (the common case: ids, names, paths) and escaped by serde_json when something does.
//!
//! Why not `serde_json::to_writer` on derived structs: it escapes every key and value byte
//! by byte, which was the largest single cost of an audited request (about a tenth of the
//! gateway's instructions per request under load). The output is the same JSON.

use std::net::IpAddr;

/// Writes one JSON value into `out`; objects and arrays nest in call order.
pub(super) struct Json<'a> {
    out: &'a mut Vec<u8>,
    /// Whether the next member needs a comma before it.
    comma: bool,
}

impl<'a> Json<'a> {
    /// Starts the top-level object.
    pub(super) fn object(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, comma: false }
    }

    /// Ends the top-level object.
    pub(super) fn finish(self) {
        self.out.push(b'}');
    }

    /// `"key":` with a comma before it when needed. `key` is a literal of the schema: ASCII
    /// letters, digits and `_` (checked in debug builds and by the tests' JSON parsing).
    fn key(&mut self, key: &'static str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{key}");
        let out = &mut *self.out;
        out.reserve(key.len() + 4);
        if self.comma {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
        self.comma = true;
    }

    /// A string value.
    fn string(&mut self, value: &str) {
        if !needs_escape(value.as_bytes()) {
            self.out.reserve(value.len() + 2);
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else if serde_json::to_writer(&mut *self.out, value).is_err() {
            // Writing a str into a Vec cannot fail; keep the line valid JSON if it ever did.
            self.out.extend_from_slice(b"\"\"");
        }
    }

    pub(super) fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        self.string(value);
    }

    pub(super) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    /// A string value made of `parts` (no allocation to join them).
    pub(super) fn str_parts(&mut self, key: &'static str, parts: &[&str]) {
        self.key(key);
        if !parts.iter().any(|p| needs_escape(p.as_bytes())) {
            self.out.push(b'"');
            for part in parts {
                self.out.extend_from_slice(part.as_bytes());
            }
            self.out.push(b'"');
        } else {
            self.string(&parts.concat());
        }
    }

    pub(super) fn u64(&mut self, key: &'static str, value: u64) {
        self.key(key);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub(super) fn i64(&mut self, key: &'static str, value: i64) {
        self.key(key);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    pub(super) fn opt_u64(&mut self, key: &'static str, value: Option<u64>) {
        if let Some(value) = value {
            self.u64(key, value);
        }
    }

    pub(super) fn bool(&mut self, key: &'static str, value: bool) {
        self.key(key);
        self.out.extend_from_slice(if value { b"true" } else { b"false" });
    }

    /// An IP address as a string (its text form never needs escaping).
    pub(super) fn ip(&mut self, key: &'static str, ip: IpAddr) {
        use std::io::Write as _;
        self.key(key);
        self.out.push(b'"');
        let _ = write!(self.out, "{ip}");
        self.out.push(b'"');
    }

    /// `"key":{` ... [`Self::end`].
    pub(super) fn begin(&mut self, key: &'static str) {
        self.key(key);
        self.out.push(b'{');
        self.comma = false;
    }

    /// `"key":{"name":value}`, OCSF's shape for a named thing (service, org, idp).
    pub(super) fn named(&mut self, key: &'static str, name: &str) {
        self.begin(key);
        self.str("name", name);
        self.end();
    }

    pub(super) fn end(&mut self) {
        self.out.push(b'}');
        self.comma = true;
    }

    /// `"key":[` ... [`Self::end_array`]; members with [`Self::element`].
    pub(super) fn begin_array(&mut self, key: &'static str) {
        self.key(key);
        self.out.push(b'[');
        self.comma = false;
    }

    pub(super) fn end_array(&mut self) {
        self.out.push(b']');
        self.comma = true;
    }

    /// Starts an object inside an array; close it with [`Self::end`].
    pub(super) fn element(&mut self) {
        if self.comma {
            self.out.push(b',');
        }
        self.out.push(b'{');
        self.comma = false;
    }

    /// A string inside an array.
    pub(super) fn string_element(&mut self, value: &str) {
        if self.comma {
            self.out.push(b',');
        }
        self.string(value);
        self.comma = true;
    }
}

/// Whether `bytes` holds a byte JSON must escape (a control character, `"` or `\`),
/// eight bytes at a time: a word has a byte below `n` (n ≤ 128) exactly when
/// `(x - n·0x01…) & !x & 0x80…` is not zero, and a byte equal to `c` when `x ^ c·0x01…`
/// has a zero byte.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or([0; 8]));
        if below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1) != 0 {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_escape_finds_every_byte_that_must_be_escaped_at_any_position() {
        for len in 0..20 {
            for at in 0..len {
                for bad in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut text = vec![b'a'; len];
                    text[at] = bad;
                    assert!(needs_escape(&text), "{bad:#x} at {at} of {len}");
                }
            }
            assert!(!needs_escape(&vec![b'a'; len]));
        }
        // Neighbours of the escaped bytes, DEL and UTF-8 pass as they are.
        assert!(!needs_escape("  !#[]^_~\u{7f}é€🙂 plain text".as_bytes()));
        assert!(!needs_escape(&(0x20u8..=0xff).filter(|b| *b != b'"' && *b != b'\\').collect::<Vec<_>>()));
    }

    #[test]
    fn strings_needing_escapes_are_escaped_and_the_rest_copied() {
        let mut out = Vec::new();
        let mut json = Json::object(&mut out);
        json.str("plain", "dev-acme@example.com /v1/sql");
        json.str("hostile", "a\"b\\c\nd\u{1}e\u{7f}é");
        json.str_parts("joined", &["POST", " ", "/v1/\"x\""]);
        json.begin_array("list");
        json.element();
        json.u64("n", 7);
        json.end();
        json.string_element("s");
        json.end_array();
        json.begin("nested");
        json.ip("ip", IpAddr::from([0u16, 0, 0, 0, 0, 0xffff, 0x7f00, 1]));
        json.bool("b", false);
        json.i64("neg", -5);
        json.end();
        json.opt_str("absent", None);
        json.opt_u64("absent_n", None);
        json.finish();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["plain"], "dev-acme@example.com /v1/sql");
        assert_eq!(value["hostile"], "a\"b\\c\nd\u{1}e\u{7f}é");
        assert_eq!(value["joined"], "POST /v1/\"x\"");
        assert_eq!(value["list"], serde_json::json!([{"n": 7}, "s"]));
        assert_eq!(value["nested"], serde_json::json!({"ip": "::ffff:127.0.0.1", "b": false, "neg": -5}));
        assert_eq!(value.as_object().unwrap().len(), 5);
        assert!(!out.contains(&b'\n'), "one line");
    }
}
