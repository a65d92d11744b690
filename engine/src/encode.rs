//! Result encodings for `/v1/sql`, chosen by `Accept`, each streamed batch by batch.

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::json::{self, writer::JsonArray};

use crate::error::EngineError;

pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv";
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The encoding the client asked for: the first supported type in `Accept`, in the
/// client's order; JSON when there is no `Accept` or it allows anything.
pub fn negotiate(accept: Option<&str>) -> Result<&'static str, EngineError> {
    let Some(accept) = accept else { return Ok(JSON) };
    for item in accept.split(',') {
        let media = item.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json" | "*/*" | "application/*" => return Ok(JSON),
            "text/csv" | "text/*" => return Ok(CSV),
            ARROW_STREAM => return Ok(ARROW_STREAM),
            _ => {}
        }
    }
    Err(EngineError::NotAcceptable(format!("no supported media type in Accept; use {JSON}, {CSV} or {ARROW_STREAM}")))
}

/// Turns record batches into body chunks. Each call returns what is ready to send, so the
/// response never holds more than one batch's encoding.
pub enum Encoder {
    Json(json::Writer<Vec<u8>, JsonArray>),
    Csv { header_written: bool, schema: SchemaRef },
    Arrow(StreamWriter<Vec<u8>>),
}

impl Encoder {
    pub fn new(media: &str, schema: SchemaRef) -> Result<Self, ArrowError> {
        Ok(match media {
            CSV => Encoder::Csv { header_written: false, schema },
            ARROW_STREAM => Encoder::Arrow(StreamWriter::try_new(Vec::new(), &schema)?),
            _ => Encoder::Json(json::WriterBuilder::new().with_explicit_nulls(true).build(Vec::new())),
        })
    }

    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Bytes, ArrowError> {
        match self {
            Encoder::Json(writer) => {
                writer.write(batch)?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
            Encoder::Csv { header_written, .. } => {
                let mut writer = csv::WriterBuilder::new().with_header(!*header_written).build(Vec::new());
                writer.write(batch)?;
                *header_written = true;
                Ok(Bytes::from(writer.into_inner()))
            }
            Encoder::Arrow(writer) => {
                writer.write(batch)?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
        }
    }

    /// What ends the stream: `]` for JSON, the end-of-stream marker for Arrow, the header
    /// for a CSV result with no rows.
    pub fn finish(&mut self) -> Result<Bytes, ArrowError> {
        match self {
            Encoder::Json(writer) => {
                writer.finish()?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
            Encoder::Csv { header_written: false, schema } => {
                let empty = RecordBatch::new_empty(schema.clone());
                self.batch(&empty)
            }
            Encoder::Csv { .. } => Ok(Bytes::new()),
            Encoder::Arrow(writer) => {
                writer.finish()?;
                Ok(Bytes::from(std::mem::take(writer.get_mut())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_client_order() {
        assert_eq!(negotiate(None).unwrap(), JSON);
        assert_eq!(negotiate(Some("text/csv, application/json")).unwrap(), CSV);
        assert_eq!(negotiate(Some("application/vnd.apache.arrow.stream")).unwrap(), ARROW_STREAM);
        assert_eq!(negotiate(Some("text/html, */*;q=0.1")).unwrap(), JSON);
        assert!(matches!(negotiate(Some("text/html")), Err(EngineError::NotAcceptable(_))));
    }
}
