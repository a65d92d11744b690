//! Datasets from files: CSV, Parquet, JSON arrays and NDJSON, one file or a folder.

use std::path::Path;

use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::{CsvReadOptions, JsonReadOptions, ParquetReadOptions, SessionContext};

use super::register::register_table;
use crate::config::{Dataset, Format, S3Config, is_s3};

/// Registers one configured dataset under its name; a dataset in S3 with a client of its
/// bucket (`s3`).
pub(crate) async fn register(ctx: &SessionContext, dataset: &Dataset, s3: &S3Config) -> Result<()> {
    let path = &dataset.path;
    let mut location = path.to_string_lossy().into_owned();
    let is_dir = if is_s3(path) {
        super::s3::register(ctx, &location, s3).map_err(DataFusionError::Plan)?;
        location.ends_with('/')
    } else {
        let metadata =
            std::fs::metadata(path).map_err(|e| DataFusionError::Plan(format!("path {}: {e}", path.display())))?;
        metadata.is_dir()
    };
    let format = match dataset.format {
        Some(format) => format,
        None if is_dir => {
            return Err(DataFusionError::Plan("`format` is required for a folder".into()));
        }
        None => format_of(path)?,
    };
    // A single file is read whatever its extension; a folder reads the files of its format.
    let extension = if is_dir { default_extension(format).to_string() } else { extension_of(path) };
    if is_dir && !location.ends_with('/') {
        location.push('/');
    }
    // Register under a temporary name, then move the provider to the (maybe qualified) name.
    let staging = format!("__portcullis_staging_{}", dataset.name.replace('.', "_"));
    match format {
        Format::Csv => {
            let options = CsvReadOptions::new().has_header(true).file_extension(&extension);
            ctx.register_csv(&staging, &location, options).await?
        }
        Format::Parquet => {
            let options = ParquetReadOptions { file_extension: &extension, ..Default::default() };
            ctx.register_parquet(&staging, &location, options).await?
        }
        Format::Json | Format::Ndjson => {
            let mut options = JsonReadOptions::default().file_extension(&extension);
            options.newline_delimited = format == Format::Ndjson;
            ctx.register_json(&staging, &location, options).await?
        }
    }
    let provider = ctx
        .deregister_table(staging.as_str())?
        .ok_or_else(|| DataFusionError::Plan("dataset vanished during registration".into()))?;
    register_table(ctx, &dataset.name, provider)
}

fn extension_of(path: &Path) -> String {
    path.extension().map(|e| format!(".{}", e.to_string_lossy())).unwrap_or_default()
}

fn format_of(path: &Path) -> Result<Format> {
    match extension_of(path).to_ascii_lowercase().as_str() {
        ".csv" => Ok(Format::Csv),
        ".parquet" => Ok(Format::Parquet),
        ".json" => Ok(Format::Json),
        ".ndjson" | ".jsonl" => Ok(Format::Ndjson),
        other => Err(DataFusionError::Plan(format!(
            "cannot infer the format from extension `{other}`; set `format` (csv, parquet, json, ndjson)"
        ))),
    }
}

fn default_extension(format: Format) -> &'static str {
    match format {
        Format::Csv => ".csv",
        Format::Parquet => ".parquet",
        Format::Json => ".json",
        Format::Ndjson => ".ndjson",
    }
}
