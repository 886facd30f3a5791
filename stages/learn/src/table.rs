//! Parquet in and out: read a whole file into one [`RecordBatch`], pull typed columns out of it
//! with errors that name the file and the column, and write a batch with snappy compression.
//!
//! Stages exchange small tables (one row per clip or per epoch), so reading everything at once
//! is simpler than streaming and costs nothing.

use std::fs::File;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt8Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use stage_api::StageError;

/// A Parquet file read into memory, with the path kept for error messages.
pub struct Table {
    path: String,
    batch: RecordBatch,
}

impl Table {
    /// Reads every row group of `path`.
    pub fn read(path: &Path) -> Result<Self, StageError> {
        let shown = path.display().to_string();
        let fail = |e: &dyn std::fmt::Display| StageError::msg(format!("{shown}: cannot read Parquet: {e}"));
        let file = File::open(path).map_err(|e| StageError::with_source(format!("{shown}: cannot open"), e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(&e))?;
        let schema = builder.schema().clone();
        let reader = builder.build().map_err(|e| fail(&e))?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| fail(&e))?;
        let batch = arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| fail(&e))?;
        Ok(Self { path: shown, batch })
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    fn column(&self, name: &str) -> Result<&ArrayRef, StageError> {
        self.batch.column_by_name(name).ok_or_else(|| StageError::msg(format!("{}: no column `{name}`", self.path)))
    }

    fn bad_type(&self, name: &str, found: &DataType) -> StageError {
        StageError::msg(format!("{}: column `{name}` has type {found}, which cannot be read here", self.path))
    }

    fn no_nulls(&self, name: &str, a: &ArrayRef) -> Result<(), StageError> {
        if a.null_count() > 0 {
            return Err(StageError::msg(format!("{}: column `{name}` has {} missing value(s)", self.path, a.null_count())));
        }
        Ok(())
    }

    /// A string column.
    pub fn strings(&self, name: &str) -> Result<Vec<String>, StageError> {
        let a = self.column(name)?;
        self.no_nulls(name, a)?;
        match a.data_type() {
            DataType::Utf8 => Ok(a.as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_owned()).collect()),
            DataType::LargeUtf8 => Ok(a.as_string::<i64>().iter().map(|s| s.unwrap_or_default().to_owned()).collect()),
            other => Err(self.bad_type(name, other)),
        }
    }

    /// An integer column of any width, widened to i64.
    pub fn ints(&self, name: &str) -> Result<Vec<i64>, StageError> {
        let a = self.column(name)?;
        self.no_nulls(name, a)?;
        macro_rules! widen {
            ($t:ty) => {
                Ok(a.as_primitive::<$t>().values().iter().map(|&v| i64::from(v)).collect())
            };
        }
        match a.data_type() {
            DataType::Int8 => widen!(Int8Type),
            DataType::Int16 => widen!(Int16Type),
            DataType::Int32 => widen!(Int32Type),
            DataType::Int64 => widen!(Int64Type),
            DataType::UInt8 => widen!(UInt8Type),
            DataType::UInt16 => widen!(UInt16Type),
            DataType::UInt32 => widen!(UInt32Type),
            other => Err(self.bad_type(name, other)),
        }
    }

    /// A float column (f32 or f64), as f64.
    pub fn floats(&self, name: &str) -> Result<Vec<f64>, StageError> {
        let a = self.column(name)?;
        self.no_nulls(name, a)?;
        match a.data_type() {
            DataType::Float32 => Ok(a.as_primitive::<Float32Type>().values().iter().map(|&v| f64::from(v)).collect()),
            DataType::Float64 => Ok(a.as_primitive::<Float64Type>().values().to_vec()),
            other => Err(self.bad_type(name, other)),
        }
    }
}

/// Writes `batch` to `path` as snappy-compressed Parquet.
/// A record batch of named, non-nullable columns.
pub fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, StageError> {
    let fields: Vec<arrow_schema::Field> =
        columns.iter().map(|(n, a)| arrow_schema::Field::new(*n, a.data_type().clone(), false)).collect();
    RecordBatch::try_new(std::sync::Arc::new(arrow_schema::Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| StageError::msg(format!("building a table: {e}")))
}

pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), StageError> {
    let fail = |e: &dyn std::fmt::Display| StageError::msg(format!("{}: cannot write Parquet: {e}", path.display()));
    let file = File::create(path).map_err(|e| fail(&e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| fail(&e))?;
    writer.write(batch).map_err(|e| fail(&e))?;
    writer.close().map_err(|e| fail(&e))?;
    Ok(())
}

/// Writes `text` to `path`, naming the file on failure.
pub fn write_text(path: &Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| StageError::with_source(format!("{}: cannot write", path.display()), e))
}

/// Writes `value` as pretty JSON with a trailing newline.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), StageError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| StageError::with_source(format!("{}: cannot encode JSON", path.display()), e))?;
    write_text(path, &(text + "\n"))
}
