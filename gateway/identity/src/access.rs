//! Access history: what the engine tells the gateway a statement read, for the audit event.
//!
//! The gateway asks with [`REPORT_HEADER`] (only when audit is on); the engine answers with
//! [`ACCESS_HEADER`] on the response head (an [`AccessReport`] as JSON: the relations the
//! statement reads as written, the base tables it reads through views, and the column policy
//! denied) and [`ROWS_HEADER`] with the rows it sent: on the head when the result goes out
//! whole, else as a trailer after the last byte. The gateway removes all three from what the
//! client receives. Neither is signed: they travel on the gateway's own connection to the
//! engine (loopback, or TLS with the engine's certificate), the channel the answer itself uses.

use serde::{Deserialize, Serialize};

/// Request header: the gateway wants the engine's access report.
pub const REPORT_HEADER: &str = "x-portcullis-report";
/// Response header: the [`AccessReport`] of the statement, as ASCII JSON.
pub const ACCESS_HEADER: &str = "x-portcullis-access";
/// Response header or trailer: the number of rows the engine sent.
pub const ROWS_HEADER: &str = "x-portcullis-rows";

/// A report larger than this leaves out its column lists (`columns_omitted`), so a statement
/// over very wide tables cannot push the response head over a client's limit.
pub const MAX_ACCESS_REPORT_BYTES: usize = 8 * 1024;

/// What one statement read, or the column it was refused for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessReport {
    /// The tables and views the statement names, with the columns it uses of each
    /// (projection, filter, join, grouping, ordering, window alike).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read: Vec<ReadColumns>,
    /// The base tables scanned, through views, with the columns read of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub base: Vec<ReadColumns>,
    /// The column policy denied, on a `column_forbidden` refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<DeniedColumn>,
    /// The column lists were left out to keep the report under [`MAX_ACCESS_REPORT_BYTES`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub columns_omitted: bool,
}

/// One relation and the columns read of it, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadColumns {
    /// `catalog.schema.table`, as [`crate::dataset_id`] spells it.
    pub dataset: String,
    #[serde(default)]
    pub columns: Vec<String>,
}

/// The column a statement was refused for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeniedColumn {
    pub dataset: String,
    pub column: String,
}

impl AccessReport {
    /// The report as one ASCII line of JSON (a valid header value whatever the names), its
    /// column lists left out when it would be over [`MAX_ACCESS_REPORT_BYTES`].
    pub fn to_header(&self) -> String {
        let text = ascii_json(self);
        if text.len() <= MAX_ACCESS_REPORT_BYTES {
            return text;
        }
        let strip = |read: &[ReadColumns]| {
            read.iter().map(|r| ReadColumns { dataset: r.dataset.clone(), columns: Vec::new() }).collect()
        };
        let mut short = AccessReport {
            read: strip(&self.read),
            base: strip(&self.base),
            denied: self.denied.clone(),
            columns_omitted: true,
        };
        let mut text = ascii_json(&short);
        while text.len() > MAX_ACCESS_REPORT_BYTES && (short.read.pop().is_some() || short.base.pop().is_some()) {
            text = ascii_json(&short);
        }
        text
    }

    /// Reads a report from its header value.
    pub fn from_header(value: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(value)
    }
}

/// JSON with every character outside printable ASCII escaped (`\u00e9`), so it is a valid
/// HTTP header and gRPC ASCII metadata value.
fn ascii_json(report: &AccessReport) -> String {
    let text = serde_json::to_string(report).unwrap_or_else(|_| "{}".to_string());
    if text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut units = [0u16; 2];
    for c in text.chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dataset: &str, columns: &[&str]) -> ReadColumns {
        ReadColumns { dataset: dataset.into(), columns: columns.iter().map(|c| c.to_string()).collect() }
    }

    #[test]
    fn a_report_is_ascii_json_that_reads_back() {
        let report = AccessReport {
            read: vec![read("datafusion.demo.my_orders", &["amount"])],
            base: vec![read("datafusion.demo.orders", &["amount", "café\u{1F600}"])],
            denied: None,
            columns_omitted: false,
        };
        let header = report.to_header();
        assert!(header.bytes().all(|b| (0x20..0x7f).contains(&b)), "{header}");
        assert_eq!(AccessReport::from_header(header.as_bytes()).unwrap(), report);
    }

    #[test]
    fn a_report_over_the_limit_keeps_the_datasets_and_says_columns_were_left_out() {
        let wide: Vec<String> = (0..2_000).map(|i| format!("column_{i}")).collect();
        let wide: Vec<&str> = wide.iter().map(String::as_str).collect();
        let report = AccessReport { read: vec![read("datafusion.public.wide", &wide)], ..AccessReport::default() };
        let header = report.to_header();
        assert!(header.len() <= MAX_ACCESS_REPORT_BYTES);
        let back = AccessReport::from_header(header.as_bytes()).unwrap();
        assert!(back.columns_omitted);
        assert_eq!(back.read, vec![read("datafusion.public.wide", &[])]);
    }
}
