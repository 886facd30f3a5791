//! Small file helpers shared by the modules: JSON, CSV and Parquet reading and writing, each
//! turning failures into a [`StageError`] that names the file and the problem.
//!
//! Parquet columns written by other stages are read tolerantly by type (any integer or float
//! width, `Utf8`/`LargeUtf8`/`Utf8View` strings) so that a writer choosing `int64` over
//! `int32` does not break the report.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::{de::DeserializeOwned, Serialize};
use stage_api::StageError;

/// `StageError` for a failed operation on `path`.
pub(crate) fn file_error(what: &str, path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::with_source(format!("{what} {}", path.display()), e)
}

pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StageError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| file_error("serializing", path, e))?;
    std::fs::write(path, text + "\n").map_err(|e| file_error("writing", path, e))
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, StageError> {
    let text = std::fs::read_to_string(path).map_err(|e| file_error("reading", path, e))?;
    serde_json::from_str(&text).map_err(|e| file_error("parsing JSON in", path, e))
}

/// Quotes a CSV field when it holds a comma, quote or line break (RFC 4180).
pub(crate) fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// Writes a CSV file with a header row.
pub(crate) fn write_csv(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<(), StageError> {
    let mut text = String::new();
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let fields: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        text.push_str(&fields.join(","));
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| file_error("writing", path, e))
}

/// Writes one record batch as a snappy-compressed Parquet file.
pub(crate) fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), StageError> {
    let file = File::create(path).map_err(|e| file_error("creating", path, e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| file_error("writing", path, e))?;
    writer.write(batch).map_err(|e| file_error("writing", path, e))?;
    writer.close().map_err(|e| file_error("writing", path, e))?;
    Ok(())
}

/// A Parquet file read fully into memory, with typed column accessors.
pub(crate) struct Table {
    path: std::path::PathBuf,
    schema: arrow_schema::SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Table {
    pub(crate) fn read(path: &Path) -> Result<Self, StageError> {
        let file = File::open(path).map_err(|e| file_error("opening", path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| file_error("reading Parquet", path, e))?;
        let schema = builder.schema().clone();
        let reader = builder.build().map_err(|e| file_error("reading Parquet", path, e))?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| file_error("reading Parquet", path, e))?;
        Ok(Self { path: path.to_owned(), schema, batches })
    }

    pub(crate) fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    pub(crate) fn has_column(&self, name: &str) -> bool {
        self.schema.index_of(name).is_ok()
    }

    /// The column names, in file order.
    pub(crate) fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    fn columns(&self, name: &str) -> Result<Vec<ArrayRef>, StageError> {
        if !self.has_column(name) {
            return Err(StageError::msg(format!("{}: missing column `{name}`", self.path.display())));
        }
        self.batches
            .iter()
            .map(|b| {
                b.column_by_name(name).cloned().ok_or_else(|| StageError::msg(format!("{}: missing column `{name}`", self.path.display())))
            })
            .collect()
    }

    fn type_error(&self, name: &str, found: &DataType, want: &str) -> StageError {
        StageError::msg(format!("{}: column `{name}` is {found}, expected {want}", self.path.display()))
    }

    /// A string column; nulls become empty strings.
    pub(crate) fn strings(&self, name: &str) -> Result<Vec<String>, StageError> {
        let mut out = Vec::with_capacity(self.num_rows());
        for col in self.columns(name)? {
            let col: &dyn Array = col.as_ref();
            let get: Box<dyn Fn(usize) -> String> = if let Some(a) = col.as_string_opt::<i32>() {
                Box::new(move |i| a.value(i).to_owned())
            } else if let Some(a) = col.as_string_opt::<i64>() {
                Box::new(move |i| a.value(i).to_owned())
            } else if let Some(a) = col.as_string_view_opt() {
                Box::new(move |i| a.value(i).to_owned())
            } else {
                return Err(self.type_error(name, col.data_type(), "a string"));
            };
            out.extend((0..col.len()).map(|i| if col.is_null(i) { String::new() } else { get(i) }));
        }
        Ok(out)
    }

    /// A numeric column (any integer or float type) as `f64`; nulls become `None`.
    pub(crate) fn numbers(&self, name: &str) -> Result<Vec<Option<f64>>, StageError> {
        let mut out = Vec::with_capacity(self.num_rows());
        for col in self.columns(name)? {
            macro_rules! take {
                ($($t:ty),*) => {
                    $(if let Some(a) = col.as_primitive_opt::<$t>() {
                        out.extend(a.iter().map(|v| v.map(|v| v as f64)));
                        continue;
                    })*
                };
            }
            take!(Float64Type, Float32Type, Int64Type, Int32Type, Int16Type, Int8Type, UInt64Type, UInt32Type, UInt16Type, UInt8Type);
            if let Some(a) = col.as_boolean_opt() {
                out.extend(a.iter().map(|v| v.map(|b| if b { 1.0 } else { 0.0 })));
                continue;
            }
            return Err(self.type_error(name, col.data_type(), "a number"));
        }
        Ok(out)
    }

    /// A numeric column without nulls, as `i64`.
    pub(crate) fn integers(&self, name: &str) -> Result<Vec<i64>, StageError> {
        self.numbers(name)?
            .into_iter()
            .enumerate()
            .map(|(row, v)| {
                v.map(|v| v as i64).ok_or_else(|| StageError::msg(format!("{}: column `{name}` is null in row {row}", self.path.display())))
            })
            .collect()
    }
}

/// Builds a record batch, naming `path` when the columns disagree.
pub(crate) fn batch(path: &Path, columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, StageError> {
    let fields: Vec<arrow_schema::Field> =
        columns.iter().map(|(name, a)| arrow_schema::Field::new(*name, a.data_type().clone(), a.null_count() > 0)).collect();
    let schema = Arc::new(arrow_schema::Schema::new(fields));
    RecordBatch::try_new(schema, columns.into_iter().map(|(_, a)| a).collect()).map_err(|e| file_error("building the table for", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int32Array, StringArray};

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn parquet_round_trip_and_missing_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let b = batch(
            &path,
            vec![
                ("name", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
                ("n", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
                ("f", Arc::new(Float32Array::from(vec![Some(0.5), None])) as ArrayRef),
            ],
        )
        .unwrap();
        write_parquet(&path, &b).unwrap();
        let t = Table::read(&path).unwrap();
        assert_eq!(t.strings("name").unwrap(), vec!["x", "y"]);
        assert_eq!(t.integers("n").unwrap(), vec![1, 2]);
        assert_eq!(t.numbers("f").unwrap(), vec![Some(0.5), None]);
        assert!(t.integers("f").unwrap_err().message.contains("null in row 1"));
        let err = t.strings("nope").unwrap_err();
        assert!(err.message.contains("t.parquet") && err.message.contains("missing column `nope`"));
        assert!(t.strings("n").unwrap_err().message.contains("expected a string"));
    }

    #[test]
    fn corrupt_parquet_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, b"not parquet").unwrap();
        let err = Table::read(&path).err().unwrap();
        assert!(err.message.contains("bad.parquet"), "{}", err.chain());
    }
}
