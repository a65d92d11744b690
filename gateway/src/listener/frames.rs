//! Counts the HTTP/2 control frames a client sends, reading only frame headers from the
//! decrypted byte stream (the h2 crate still parses and validates everything). hyper and h2
//! bound RST_STREAM and SETTINGS floods; nothing bounds WINDOW_UPDATE or PING floods, which
//! cost the server work per frame for no data: [`ControlBudget`] cuts a connection off when
//! they come faster than a client that is reading what it asked for would send them.

/// The client connection preface (RFC 9113 §3.4), skipped before the first frame header.
const PREFACE_LEN: usize = 24;
const HEADER_LEN: usize = 9;

/// PRIORITY, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE.
fn is_control(frame_type: u8) -> bool {
    matches!(frame_type, 0x2 | 0x3 | 0x4 | 0x6 | 0x8)
}

/// Follows frame boundaries through the byte stream as it is read.
#[derive(Debug)]
pub struct FrameCounter {
    preface_left: usize,
    header: [u8; HEADER_LEN],
    have: usize,
    payload_left: usize,
}

impl Default for FrameCounter {
    fn default() -> Self {
        Self { preface_left: PREFACE_LEN, header: [0; HEADER_LEN], have: 0, payload_left: 0 }
    }
}

impl FrameCounter {
    /// The number of control frames whose header completes in `bytes`.
    pub fn feed(&mut self, mut bytes: &[u8]) -> u32 {
        let mut control = 0;
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = bytes.get(n..).unwrap_or_default();
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = bytes.get(n..).unwrap_or_default();
            } else {
                let n = (HEADER_LEN - self.have).min(bytes.len());
                for (slot, byte) in self.header.iter_mut().skip(self.have).zip(bytes.iter().take(n)) {
                    *slot = *byte;
                }
                self.have += n;
                bytes = bytes.get(n..).unwrap_or_default();
                if self.have == HEADER_LEN {
                    self.have = 0;
                    let [l0, l1, l2, frame_type, ..] = self.header;
                    self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                    control += u32::from(is_control(frame_type));
                }
            }
        }
        control
    }
}

/// The error code of a GOAWAY sent for a control-frame flood (RFC 9113 §7). hyper's
/// graceful shutdown sends NO_ERROR, so [`Outgoing`] sets it in the frames the gateway writes.
const ENHANCE_YOUR_CALM: [u8; 4] = [0, 0, 0, 0xb];
const GOAWAY: u8 = 0x7;

/// Follows the frame boundaries of what the gateway writes, to find GOAWAY error codes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outgoing {
    header: [u8; HEADER_LEN],
    have: usize,
    payload_left: usize,
    /// Bytes of the current payload already passed.
    offset: usize,
    goaway: bool,
}

impl Outgoing {
    /// Walks `bytes`, calling `at_code(index in bytes, index in the error code)` for each byte
    /// of a GOAWAY's error code (payload bytes 4 to 7).
    fn walk(&mut self, bytes: &[u8], mut at_code: impl FnMut(usize, usize)) {
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            if self.payload_left > 0 {
                // Payloads are skipped whole (a large DATA frame costs nothing per byte); only
                // a GOAWAY's are looked into.
                let n = self.payload_left.min(bytes.len() - i);
                if self.goaway {
                    for k in 0..n {
                        if (4..8).contains(&(self.offset + k)) {
                            at_code(i + k, self.offset + k - 4);
                        }
                    }
                }
                self.offset += n;
                self.payload_left -= n;
                i += n;
            } else {
                if let Some(slot) = self.header.get_mut(self.have) {
                    *slot = byte;
                }
                self.have += 1;
                if self.have == HEADER_LEN {
                    let [l0, l1, l2, frame_type, ..] = self.header;
                    self.payload_left = usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                    self.goaway = frame_type == GOAWAY;
                    self.offset = 0;
                    self.have = 0;
                }
                i += 1;
            }
        }
    }

    /// Moves past bytes the gateway wrote.
    pub fn advance(&mut self, bytes: &[u8]) {
        self.walk(bytes, |_, _| {});
    }

    /// `bytes` with the error code of any GOAWAY in them set to ENHANCE_YOUR_CALM; `None` when
    /// they carry none. Does not move past them (only what is written is passed).
    pub fn calm(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let mut copy: Option<Vec<u8>> = None;
        let mut probe = *self;
        probe.walk(bytes, |at, k| {
            let out = copy.get_or_insert_with(|| bytes.to_vec());
            if let (Some(slot), Some(code)) = (out.get_mut(at), ENHANCE_YOUR_CALM.get(k)) {
                *slot = *code;
            }
        });
        copy
    }
}

/// Control frames allowed per one-second window: a fixed allowance plus one per KiB the
/// gateway sent in that window (a reading client acknowledges data with WINDOW_UPDATEs).
#[derive(Debug)]
pub(crate) struct ControlBudget {
    counter: FrameCounter,
    per_sec: u64,
    window_start_ms: u64,
    control: u64,
    written: u64,
}

impl ControlBudget {
    pub(crate) fn new(per_sec: u32) -> Self {
        Self {
            counter: FrameCounter::default(),
            per_sec: u64::from(per_sec),
            window_start_ms: 0,
            control: 0,
            written: 0,
        }
    }

    fn roll(&mut self, now_ms: u64) {
        if now_ms.saturating_sub(self.window_start_ms) >= 1000 {
            self.window_start_ms = now_ms;
            self.control = 0;
            self.written = 0;
        }
    }

    /// Bytes the gateway wrote to the client.
    pub(crate) fn wrote(&mut self, n: usize, now_ms: u64) {
        self.roll(now_ms);
        self.written += n as u64;
    }

    /// Bytes read from the client; `false` once the window's control frames are over budget.
    pub(crate) fn read(&mut self, bytes: &[u8], now_ms: u64) -> bool {
        self.roll(now_ms);
        self.control += u64::from(self.counter.feed(bytes));
        self.control <= self.per_sec + self.written / 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(frame_type: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, frame_type, 0, 0, 0, 0, 1];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn counts_control_frames_across_any_split() {
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(0x4, &[])); // SETTINGS
        stream.extend(frame(0x1, &[0u8; 40])); // HEADERS
        stream.extend(frame(0x0, &[0x8; 300])); // DATA whose payload looks like frame types
        stream.extend(frame(0x8, &[0, 0, 0, 1])); // WINDOW_UPDATE
        stream.extend(frame(0x6, &[0; 8])); // PING
        for chunk in [1, 2, 7, 9, 64, stream.len()] {
            let mut counter = FrameCounter::default();
            let total: u32 = stream.chunks(chunk).map(|c| counter.feed(c)).sum();
            assert_eq!(total, 3, "chunk size {chunk}");
        }
    }

    #[test]
    fn a_goaway_written_in_any_split_gets_enhance_your_calm() {
        let mut stream = frame(0x4, &[]); // SETTINGS
        stream.extend(frame(0x0, &[0x7; 20])); // DATA whose payload looks like a GOAWAY
        stream.extend(frame(0x7, &[0, 0, 0, 5, 0, 0, 0, 0, b'd', b'b', b'g'])); // GOAWAY NO_ERROR
        stream.extend(frame(0x6, &[0; 8])); // PING
        let mut expected = stream.clone();
        let at = expected.len() - 17 - 3 - 4; // the GOAWAY's error code
        expected[at..at + 4].copy_from_slice(&ENHANCE_YOUR_CALM);
        for chunk in [1, 3, 9, 13, stream.len()] {
            let mut outgoing = Outgoing::default();
            let mut written = Vec::new();
            for piece in stream.chunks(chunk) {
                written.extend(outgoing.calm(piece).unwrap_or_else(|| piece.to_vec()));
                outgoing.advance(piece);
            }
            assert_eq!(written, expected, "chunk size {chunk}");
        }
        assert!(Outgoing::default().calm(&frame(0x0, &[0x7; 20])).is_none());
    }

    #[test]
    fn a_flood_is_over_budget_and_data_earns_allowance() {
        let mut budget = ControlBudget::new(10);
        let mut flood = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        for _ in 0..10 {
            flood.extend(frame(0x8, &[0, 0, 0, 1]));
        }
        assert!(budget.read(&flood, 0), "10 frames are within the allowance");
        assert!(!budget.read(&frame(0x8, &[0, 0, 0, 1]), 10), "the 11th is not");
        // A new window; data sent earns one frame per KiB.
        budget.wrote(64 * 1024, 1500);
        let acks: Vec<u8> = (0..70).flat_map(|_| frame(0x8, &[0, 0, 0, 1])).collect();
        assert!(budget.read(&acks, 1600));
    }
}
