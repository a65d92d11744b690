//! Counts the rows of a result as its bytes pass, from the framing alone: JSON array
//! elements, CSV records, Arrow IPC record-batch headers, Flight `FlightData` headers. No
//! value is decoded, so counting costs a scan of the bytes; a malformed stream is an error
//! (the gateway then ends the response), never a low count. The count is the gateway's own,
//! so a budget holds even if the engine misreports.

use super::ipc_message;

/// Largest metadata of one IPC message the counter holds (a batch's is a few KiB).
const MAX_METADATA: usize = 1 << 20;

/// One result's counter, by its encoding.
#[derive(Debug)]
pub enum RowCounter {
    /// `application/json`: an array of objects.
    Json { depth: u32, in_string: bool, escaped: bool },
    /// `text/csv`: a header record, then one record per row.
    Csv { in_quotes: bool, records: u64 },
    /// `application/vnd.apache.arrow.stream`.
    ArrowStream(IpcStream),
    /// A Flight `DoGet`: gRPC messages of `FlightData`.
    Flight(FlightStream),
}

impl RowCounter {
    /// The counter for a response of `content_type` (`None`: not a result the gateway
    /// counts).
    pub fn for_content_type(content_type: &[u8]) -> Option<Self> {
        let media = content_type.split(|&c| c == b';').next().unwrap_or_default().trim_ascii();
        Some(match media {
            b"application/json" => Self::Json { depth: 0, in_string: false, escaped: false },
            b"text/csv" => Self::Csv { in_quotes: false, records: 0 },
            b"application/vnd.apache.arrow.stream" => Self::ArrowStream(IpcStream::default()),
            b"application/grpc" | b"application/grpc+proto" => Self::Flight(FlightStream::default()),
            _ => return None,
        })
    }

    /// The rows that end in `chunk`.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<u64, &'static str> {
        match self {
            Self::Json { depth, in_string, escaped } => {
                let mut rows = 0;
                for &c in chunk {
                    if *in_string {
                        match (*escaped, c) {
                            (true, _) => *escaped = false,
                            (false, b'\\') => *escaped = true,
                            (false, b'"') => *in_string = false,
                            _ => {}
                        }
                        continue;
                    }
                    match c {
                        b'"' => *in_string = true,
                        b'[' | b'{' => {
                            if c == b'{' && *depth == 1 {
                                rows += 1;
                            }
                            *depth = depth.checked_add(1).ok_or("JSON nested too deep")?;
                        }
                        b']' | b'}' => *depth = depth.checked_sub(1).ok_or("JSON closes more than it opened")?,
                        _ => {}
                    }
                }
                Ok(rows)
            }
            Self::Csv { in_quotes, records } => {
                let before = records.saturating_sub(1);
                for &c in chunk {
                    match c {
                        b'"' => *in_quotes = !*in_quotes,
                        b'\n' if !*in_quotes => *records += 1,
                        _ => {}
                    }
                }
                // The first record is the header.
                Ok(records.saturating_sub(1) - before)
            }
            Self::ArrowStream(stream) => stream.feed(chunk),
            Self::Flight(stream) => stream.feed(chunk),
        }
    }
}

/// An Arrow IPC stream: `[0xFFFFFFFF] <metadata length> <Message> <body>`, repeated.
#[derive(Debug, Default)]
pub struct IpcStream {
    state: IpcState,
}

#[derive(Debug)]
enum IpcState {
    /// The continuation marker and the metadata length (8 bytes, or 4 in the old format).
    Prefix {
        bytes: [u8; 8],
        have: usize,
    },
    Metadata {
        need: usize,
        bytes: Vec<u8>,
    },
    Body {
        left: u64,
    },
    /// After the end-of-stream marker: nothing may follow.
    Ended,
}

impl Default for IpcState {
    fn default() -> Self {
        Self::Prefix { bytes: [0; 8], have: 0 }
    }
}

impl IpcStream {
    fn feed(&mut self, mut chunk: &[u8]) -> Result<u64, &'static str> {
        let mut rows = 0u64;
        while !chunk.is_empty() {
            match &mut self.state {
                IpcState::Prefix { bytes, have } => {
                    // 4 bytes, then 4 more after a continuation marker (the old format has
                    // none: its 4 bytes are the length).
                    let marked = *have >= 4 && bytes.starts_with(&[0xff; 4]);
                    fill(bytes, have, if marked { 8 } else { 4 }, &mut chunk);
                    let marked = *have >= 4 && bytes.starts_with(&[0xff; 4]);
                    let [a, b, c, d, e, f, g, h] = *bytes;
                    let length = match (*have, marked) {
                        (8, true) => u32::from_le_bytes([e, f, g, h]),
                        (4, false) => u32::from_le_bytes([a, b, c, d]),
                        _ => continue,
                    };
                    let need = length as usize;
                    if need == 0 {
                        self.state = IpcState::Ended;
                    } else if need > MAX_METADATA {
                        return Err("Arrow IPC metadata too large");
                    } else {
                        self.state = IpcState::Metadata { need, bytes: Vec::with_capacity(need) };
                    }
                }
                IpcState::Metadata { need, bytes } => {
                    bytes.extend_from_slice(split(&mut chunk, need.saturating_sub(bytes.len())));
                    rows += self.settle()?;
                }
                IpcState::Body { left } => {
                    let taken = split(&mut chunk, usize::try_from(*left).unwrap_or(usize::MAX)).len() as u64;
                    *left -= taken;
                    if *left == 0 {
                        self.state = IpcState::default();
                    }
                }
                IpcState::Ended => return Err("bytes after the end of the Arrow IPC stream"),
            }
        }
        Ok(rows)
    }

    /// Once the metadata is whole: its rows, and on to the body.
    fn settle(&mut self) -> Result<u64, &'static str> {
        let IpcState::Metadata { need, bytes } = &self.state else { return Ok(0) };
        if bytes.len() > *need {
            return Err("Arrow IPC metadata longer than announced");
        }
        if bytes.len() < *need {
            return Ok(0);
        }
        let message = ipc_message::read(bytes)?;
        self.state =
            if message.body_len == 0 { IpcState::default() } else { IpcState::Body { left: message.body_len } };
        Ok(message.rows)
    }
}

/// gRPC messages (`<compressed: 1> <length: 4, big-endian> <message>`) each a `FlightData`
/// protobuf, whose field 2 (`data_header`) is an IPC `Message`; other fields are skipped.
#[derive(Debug, Default)]
pub struct FlightStream {
    state: FlightState,
    /// Bytes of the current gRPC message still to come.
    message_left: u64,
}

#[derive(Debug)]
enum FlightState {
    Frame {
        bytes: [u8; 5],
        have: usize,
    },
    /// A field's key or length, as varint bytes.
    Varint {
        value: u64,
        shift: u32,
        then: AfterVarint,
    },
    Header {
        need: usize,
        bytes: Vec<u8>,
    },
    Skip {
        left: u64,
    },
}

#[derive(Debug, Clone, Copy)]
enum AfterVarint {
    Key,
    /// The length of field `field`.
    Length {
        field: u64,
    },
    /// A varint field's value: nothing to do.
    Value,
}

impl Default for FlightState {
    fn default() -> Self {
        Self::Frame { bytes: [0; 5], have: 0 }
    }
}

/// `FlightData.data_header`.
const DATA_HEADER: u64 = 2;

impl FlightStream {
    fn feed(&mut self, mut chunk: &[u8]) -> Result<u64, &'static str> {
        let mut rows = 0u64;
        while !chunk.is_empty() {
            if !matches!(self.state, FlightState::Frame { .. }) && self.message_left == 0 {
                return Err("a FlightData field runs past its gRPC message");
            }
            match &mut self.state {
                FlightState::Frame { bytes, have } => {
                    fill(bytes, have, 5, &mut chunk);
                    if *have == 5 {
                        let [compressed, length @ ..] = *bytes;
                        if compressed != 0 {
                            return Err("a compressed gRPC message (the engine sends none)");
                        }
                        self.message_left = u64::from(u32::from_be_bytes(length));
                        self.state = self.next_field();
                    }
                }
                FlightState::Varint { value, shift, then } => {
                    let Some((&byte, rest)) = chunk.split_first() else { break };
                    chunk = rest;
                    self.message_left = spend(self.message_left, 1)?;
                    if *shift > 63 {
                        return Err("a protobuf varint over 10 bytes");
                    }
                    *value |= u64::from(byte & 0x7f) << *shift;
                    *shift += 7;
                    if byte & 0x80 != 0 {
                        continue;
                    }
                    let (value, then) = (*value, *then);
                    self.state = match then {
                        AfterVarint::Key => match value & 7 {
                            0 => FlightState::Varint { value: 0, shift: 0, then: AfterVarint::Value },
                            1 => FlightState::Skip { left: 8 },
                            2 => FlightState::Varint {
                                value: 0,
                                shift: 0,
                                then: AfterVarint::Length { field: value >> 3 },
                            },
                            5 => FlightState::Skip { left: 4 },
                            _ => return Err("a protobuf wire type FlightData does not use"),
                        },
                        AfterVarint::Length { field } => {
                            if value > self.message_left {
                                return Err("a FlightData field runs past its gRPC message");
                            }
                            if field == DATA_HEADER {
                                let need = usize::try_from(value).map_err(|_| "Arrow IPC metadata too large")?;
                                if need > MAX_METADATA {
                                    return Err("Arrow IPC metadata too large");
                                }
                                FlightState::Header { need, bytes: Vec::with_capacity(need) }
                            } else {
                                FlightState::Skip { left: value }
                            }
                        }
                        AfterVarint::Value => self.next_field(),
                    };
                    if matches!(self.state, FlightState::Skip { left: 0 } | FlightState::Header { need: 0, .. }) {
                        self.state = self.next_field();
                    }
                }
                FlightState::Header { need, bytes } => {
                    let taken = split(&mut chunk, need.saturating_sub(bytes.len()));
                    bytes.extend_from_slice(taken);
                    self.message_left = spend(self.message_left, taken.len() as u64)?;
                    if bytes.len() == *need {
                        rows += ipc_message::read(bytes)?.rows;
                        self.state = self.next_field();
                    }
                }
                FlightState::Skip { left } => {
                    let taken = split(&mut chunk, usize::try_from(*left).unwrap_or(usize::MAX)).len() as u64;
                    *left -= taken;
                    self.message_left = spend(self.message_left, taken)?;
                    if *left == 0 {
                        self.state = self.next_field();
                    }
                }
            }
        }
        Ok(rows)
    }

    /// The next field of the message, or the next message's frame.
    fn next_field(&self) -> FlightState {
        if self.message_left == 0 {
            FlightState::default()
        } else {
            FlightState::Varint { value: 0, shift: 0, then: AfterVarint::Key }
        }
    }
}

/// What is left of a gRPC message after `used` more of its bytes.
fn spend(left: u64, used: u64) -> Result<u64, &'static str> {
    left.checked_sub(used).ok_or("a FlightData field runs past its gRPC message")
}

/// The first `n` bytes of `chunk` (fewer if it is shorter), which then starts after them.
fn split<'a>(chunk: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = chunk.split_at_checked(n.min(chunk.len())).unwrap_or((chunk, &[]));
    *chunk = rest;
    head
}

/// Fills `buf` from `have` up to `want` bytes with what `chunk` has.
fn fill<const N: usize>(buf: &mut [u8; N], have: &mut usize, want: usize, chunk: &mut &[u8]) {
    let taken = split(chunk, want.min(N).saturating_sub(*have));
    for (slot, byte) in buf.iter_mut().skip(*have).zip(taken) {
        *slot = *byte;
    }
    *have += taken.len();
}
