//! Result encodings for `/v1/sql`, chosen by `Accept`, each streamed batch by batch.

use std::sync::Arc;

use bytes::Bytes;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::csv;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
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
                writer.write(&without_formulas(batch)?)?;
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

/// A spreadsheet opening a CSV file runs a cell that starts with `=`, `+`, `-`, `@`, a tab
/// or a carriage return as a formula (CSV injection). Text cells and column names that start
/// so are written with a leading `'`, which spreadsheets show as text (OWASP's advice);
/// numbers are left as they are.
fn without_formulas(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let risky = |text: &str| text.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let neutral = |text: &str| if risky(text) { format!("'{text}") } else { text.to_string() };
    let schema = batch.schema();
    let needs = schema.fields().iter().any(|f| risky(f.name()))
        || batch.columns().iter().any(|c| text_values(c).is_some_and(|v| v.iter().flatten().any(|text| risky(text))));
    if !needs {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let (data_type, column) = match text_values(column) {
            Some(values) => {
                let array: StringArray = values.iter().map(|v| v.map(neutral)).collect();
                (DataType::Utf8, Arc::new(array) as ArrayRef)
            }
            None => (field.data_type().clone(), Arc::clone(column)),
        };
        fields.push(Field::new(neutral(field.name()), data_type, field.is_nullable()));
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// A text column's values, whichever string layout it has.
fn text_values(column: &ArrayRef) -> Option<Vec<Option<&str>>> {
    match column.data_type() {
        DataType::Utf8 => Some(column.as_string::<i32>().iter().collect()),
        DataType::LargeUtf8 => Some(column.as_string::<i64>().iter().collect()),
        DataType::Utf8View => Some(column.as_string_view().iter().collect()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn csv_cells_and_names_never_start_a_formula() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("=HYPERLINK(\"x\")", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let text: StringArray =
            vec![Some("=1+1"), Some("+cmd"), Some("-2"), Some("@SUM(A1)"), Some("\tx"), Some("ok"), None]
                .into_iter()
                .collect();
        let numbers = Int64Array::from(vec![-1, -2, -3, -4, -5, 6, 7]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(text), Arc::new(numbers)]).unwrap();
        let mut encoder = Encoder::new(CSV, schema).unwrap();
        let csv = String::from_utf8(encoder.batch(&batch).unwrap().to_vec()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].starts_with("\"'=HYPERLINK") && lines[0].ends_with(",n"), "{csv}");
        assert_eq!(
            lines[1..].iter().map(|l| l.rsplit_once(',').unwrap().0).collect::<Vec<_>>()[..6].to_vec(),
            ["'=1+1", "'+cmd", "'-2", "'@SUM(A1)", "'\tx", "ok"],
            "{csv}"
        );
        assert!(lines[1].ends_with(",-1"), "numbers are left alone: {csv}");
        assert!(csv.lines().all(|l| !l.starts_with(['=', '+', '-', '@'])), "{csv}");
    }

    #[test]
    fn negotiation_follows_client_order() {
        assert_eq!(negotiate(None).unwrap(), JSON);
        assert_eq!(negotiate(Some("text/csv, application/json")).unwrap(), CSV);
        assert_eq!(negotiate(Some("application/vnd.apache.arrow.stream")).unwrap(), ARROW_STREAM);
        assert_eq!(negotiate(Some("text/html, */*;q=0.1")).unwrap(), JSON);
        assert!(matches!(negotiate(Some("text/html")), Err(EngineError::NotAcceptable(_))));
    }
}
