//! A caller's result caps (`max_result_rows`, `max_result_bytes` of its tier): the result
//! stream ends at the cap, flagged, or fails with `result_limit`. A cap is hit only when a
//! row past it exists, so a result of exactly the cap is whole and not flagged. Ending the
//! stream drops the query's, which stops its work.

use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::{Array, RecordBatch};
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use identity::{OnExceed, StatementLimits};

/// The cap a result was cut at (`max_result_rows` or `max_result_bytes`), once it was;
/// read when the stream has ended.
#[derive(Debug, Clone, Default)]
pub struct Truncation(Arc<OnceLock<&'static str>>);

impl Truncation {
    /// The cap the result was cut at, if it was.
    pub fn cap(&self) -> Option<&'static str> {
        self.0.get().copied()
    }
}

/// A result over its caller's cap, in `fail` mode.
#[derive(Debug, thiserror::Error)]
#[error("the result has more than {limit} {unit} ({cap} of tier {tier}); narrow the query or add a LIMIT")]
pub struct ResultLimit {
    pub cap: &'static str,
    pub limit: u64,
    pub unit: &'static str,
    pub tier: String,
}

/// `stream` held to the caps of `limits` (unchanged when it has none).
pub fn cap(stream: SendableRecordBatchStream, limits: &StatementLimits) -> (SendableRecordBatchStream, Truncation) {
    let truncation = Truncation::default();
    if !limits.caps_result() {
        return (stream, truncation);
    }
    let schema = stream.schema();
    let state = Cap {
        rows_left: limits.max_result_rows.unwrap_or(u64::MAX),
        bytes_left: limits.max_result_bytes.unwrap_or(u64::MAX),
        limits: limits.clone(),
        truncation: truncation.clone(),
    };
    let capped = futures::stream::unfold(Some((stream, state)), |held| async move {
        let (mut stream, mut cap) = held?;
        loop {
            let batch = match stream.next().await? {
                Ok(batch) => batch,
                Err(error) => return Some((Err(error), None)),
            };
            if batch.num_rows() == 0 {
                continue;
            }
            return match cap.admit(batch) {
                Admitted::Whole(batch) => Some((Ok(batch), Some((stream, cap)))),
                // The query's stream is dropped here: its work stops.
                Admitted::Cut(Some(batch)) => Some((Ok(batch), None)),
                Admitted::Cut(None) => None,
                Admitted::Refused(error) => Some((Err(error), None)),
            };
        }
    });
    (Box::pin(RecordBatchStreamAdapter::new(schema, capped)), truncation)
}

struct Cap {
    rows_left: u64,
    bytes_left: u64,
    limits: StatementLimits,
    truncation: Truncation,
}

enum Admitted {
    Whole(RecordBatch),
    /// The cap was reached inside this batch: what fits of it, and the end.
    Cut(Option<RecordBatch>),
    Refused(DataFusionError),
}

impl Cap {
    fn admit(&mut self, batch: RecordBatch) -> Admitted {
        let rows = batch.num_rows() as u64;
        let bytes = size(&batch);
        if rows <= self.rows_left && bytes <= self.bytes_left {
            self.rows_left -= rows;
            self.bytes_left -= bytes;
            return Admitted::Whole(batch);
        }
        let (cap, limit, unit) = if rows > self.rows_left {
            ("max_result_rows", self.limits.max_result_rows, "rows")
        } else {
            ("max_result_bytes", self.limits.max_result_bytes, "bytes")
        };
        crate::metrics::limit_applied(&self.limits.tier, cap);
        if self.limits.on_exceed == OnExceed::Fail {
            let limit = limit.unwrap_or_default();
            let tier = self.limits.tier.clone();
            return Admitted::Refused(DataFusionError::External(Box::new(ResultLimit { cap, limit, unit, tier })));
        }
        let _ = self.truncation.0.set(cap);
        // The most rows that fit both caps (the byte size of a slice is not linear in its
        // rows, so found by bisection).
        let mut fits = rows.min(self.rows_left);
        if size(&batch.slice(0, fits as usize)) > self.bytes_left {
            let (mut low, mut high) = (0u64, fits);
            while low < high {
                let mid = (low + high).div_ceil(2);
                if size(&batch.slice(0, mid as usize)) <= self.bytes_left { low = mid } else { high = mid - 1 }
            }
            fits = low;
        }
        Admitted::Cut((fits > 0).then(|| batch.slice(0, fits as usize)))
    }
}

/// The Arrow data size of a batch's rows (of a slice: the slice's share, not its buffers').
fn size(batch: &RecordBatch) -> u64 {
    batch.columns().iter().map(|column| column.to_data().get_slice_memory_size().unwrap_or(0) as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;

    fn batches(sizes: &[usize]) -> SendableRecordBatchStream {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let mut next = 0i64;
        let batches: Vec<_> = sizes
            .iter()
            .map(|&n| {
                let values: Vec<i64> = (next..next + n as i64).collect();
                next += n as i64;
                Ok(RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from(values))]).unwrap())
            })
            .collect();
        Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::iter(batches)))
    }

    fn limits(rows: Option<u64>, bytes: Option<u64>, on_exceed: OnExceed) -> StatementLimits {
        StatementLimits {
            tier: "group:capped".into(),
            max_result_rows: rows,
            max_result_bytes: bytes,
            on_exceed,
            ..StatementLimits::default()
        }
    }

    async fn rows(stream: SendableRecordBatchStream) -> Result<Vec<i64>, DataFusionError> {
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        Ok(batches
            .iter()
            .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect())
    }

    #[tokio::test]
    async fn truncates_at_the_row_cap_inside_a_batch_and_flags_it() {
        let (stream, truncation) = cap(batches(&[4, 4, 4]), &limits(Some(6), None, OnExceed::Truncate));
        assert_eq!(rows(stream).await.unwrap(), (0..6).collect::<Vec<_>>());
        assert_eq!(truncation.cap(), Some("max_result_rows"));
    }

    #[tokio::test]
    async fn a_result_of_exactly_the_cap_is_whole() {
        let (stream, truncation) = cap(batches(&[4, 4]), &limits(Some(8), None, OnExceed::Truncate));
        assert_eq!(rows(stream).await.unwrap().len(), 8);
        assert_eq!(truncation.cap(), None);
    }

    #[tokio::test]
    async fn fail_mode_refuses_naming_the_cap_and_tier() {
        let (stream, truncation) = cap(batches(&[4, 4]), &limits(Some(5), None, OnExceed::Fail));
        let error = rows(stream).await.unwrap_err().to_string();
        assert!(error.contains("more than 5 rows (max_result_rows of tier group:capped)"), "{error}");
        assert_eq!(truncation.cap(), None);
    }

    #[tokio::test]
    async fn truncates_at_the_byte_cap() {
        // 8 bytes a row: 100 bytes hold 12 rows.
        let (stream, truncation) = cap(batches(&[10, 10]), &limits(None, Some(100), OnExceed::Truncate));
        assert_eq!(rows(stream).await.unwrap().len(), 12);
        assert_eq!(truncation.cap(), Some("max_result_bytes"));
    }

    #[test]
    fn a_slice_counts_its_own_bytes() {
        let column = StringArray::from(vec!["a".repeat(100), "b".into(), "c".into()]);
        let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(column)]).unwrap();
        assert!(size(&batch.slice(1, 2)) < size(&batch.slice(0, 1)));
    }
}
