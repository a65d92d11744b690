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

/// Control frames allowed per one-second window: a fixed allowance plus one per KiB the
/// gateway sent in that window (a reading client acknowledges data with WINDOW_UPDATEs).
#[derive(Debug)]
pub struct ControlBudget {
    counter: FrameCounter,
    per_sec: u64,
    window_start_ms: u64,
    control: u64,
    written: u64,
}

impl ControlBudget {
    pub fn new(per_sec: u32) -> Self {
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
    pub fn wrote(&mut self, n: usize, now_ms: u64) {
        self.roll(now_ms);
        self.written += n as u64;
    }

    /// Bytes read from the client; `false` once the window's control frames are over budget.
    pub fn read(&mut self, bytes: &[u8], now_ms: u64) -> bool {
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
