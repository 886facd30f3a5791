//! Parquet in and out, for every table stages exchange: read a whole file, pull typed columns
//! out of it with errors that name the file and the column, and write a batch with snappy
//! compression.
//!
//! Stages exchange small tables (one row per clip or per epoch), so reading everything at once
//! is simpler than streaming and costs nothing. Columns are read tolerantly by type (any
//! integer or float width, `Utf8`/`LargeUtf8`/`Utf8View` strings), so a table written by
//! pandas/pyarrow, or by a writer that picked `int64` over `int32`, reads the same.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use stage_api::StageError;

/// A Parquet file read fully into memory, with typed column accessors.
pub struct Table {
    path: PathBuf,
    schema: SchemaRef,
    batch: RecordBatch,
}

impl Table {
    /// Reads every row group of `path`.
    pub fn read(path: &Path) -> Result<Self, StageError> {
        let shown = path.display();
        let fail = |e: &dyn std::fmt::Display| StageError::msg(format!("{shown}: not a readable Parquet file: {e}"));
        let file = File::open(path).map_err(|e| StageError::with_source(format!("{shown}: cannot open"), e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fail(&e))?;
        let schema = builder.schema().clone();
        let reader = builder.build().map_err(|e| fail(&e))?;
        let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| fail(&e))?;
        let batch = arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| fail(&e))?;
        Ok(Self { path: path.to_owned(), schema, batch })
    }

    /// The file this table was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn has_column(&self, name: &str) -> bool {
        self.schema.index_of(name).is_ok()
    }

    /// The column names, in file order.
    pub fn column_names(&self) -> Vec<String> {
        self.schema.fields().iter().map(|f| f.name().clone()).collect()
    }

    fn column(&self, name: &str) -> Result<&ArrayRef, StageError> {
        self.batch.column_by_name(name).ok_or_else(|| StageError::msg(format!("{}: missing column `{name}`", self.path.display())))
    }

    fn type_error(&self, name: &str, found: &DataType, want: &str) -> StageError {
        StageError::msg(format!("{}: column `{name}` is {found}, expected {want}", self.path.display()))
    }

    fn null_error(&self, name: &str, row: usize) -> StageError {
        StageError::msg(format!("{}: column `{name}` is null in row {row}", self.path.display()))
    }

    /// A string column; nulls become `None`.
    pub fn optional_strings(&self, name: &str) -> Result<Vec<Option<String>>, StageError> {
        let col: &dyn Array = self.column(name)?.as_ref();
        let get: Box<dyn Fn(usize) -> String> = if let Some(a) = col.as_string_opt::<i32>() {
            Box::new(move |i| a.value(i).to_owned())
        } else if let Some(a) = col.as_string_opt::<i64>() {
            Box::new(move |i| a.value(i).to_owned())
        } else if let Some(a) = col.as_string_view_opt() {
            Box::new(move |i| a.value(i).to_owned())
        } else {
            return Err(self.type_error(name, col.data_type(), "a string"));
        };
        Ok((0..col.len()).map(|i| (!col.is_null(i)).then(|| get(i))).collect())
    }

    /// A string column without nulls.
    pub fn strings(&self, name: &str) -> Result<Vec<String>, StageError> {
        let values = self.optional_strings(name)?;
        values.into_iter().enumerate().map(|(row, v)| v.ok_or_else(|| self.null_error(name, row))).collect()
    }

    /// A numeric column (any integer or float type, or boolean as 0/1) as `f64`; nulls become `None`.
    pub fn numbers(&self, name: &str) -> Result<Vec<Option<f64>>, StageError> {
        let col = self.column(name)?;
        macro_rules! take {
            ($($t:ty),*) => {
                $(if let Some(a) = col.as_primitive_opt::<$t>() {
                    return Ok(a.iter().map(|v| v.map(|v| v as f64)).collect());
                })*
            };
        }
        take!(Float64Type, Float32Type, Int64Type, Int32Type, Int16Type, Int8Type, UInt64Type, UInt32Type, UInt16Type, UInt8Type);
        if let Some(a) = col.as_boolean_opt() {
            return Ok(a.iter().map(|v| v.map(|b| if b { 1.0 } else { 0.0 })).collect());
        }
        Err(self.type_error(name, col.data_type(), "a number"))
    }

    /// A numeric column without nulls, as `f64`.
    pub fn floats(&self, name: &str) -> Result<Vec<f64>, StageError> {
        let values = self.numbers(name)?;
        values.into_iter().enumerate().map(|(row, v)| v.ok_or_else(|| self.null_error(name, row))).collect()
    }

    /// An integer column without nulls, as `i64` (exact for every integer width; a float
    /// column is truncated, as pandas writes integer columns with gaps as floats).
    pub fn integers(&self, name: &str) -> Result<Vec<i64>, StageError> {
        let col = self.column(name)?;
        macro_rules! widen {
            ($($t:ty),*) => {
                $(if let Some(a) = col.as_primitive_opt::<$t>() {
                    return a.iter().enumerate().map(|(row, v)| v.map(|v| v as i64).ok_or_else(|| self.null_error(name, row))).collect();
                })*
            };
        }
        widen!(Int64Type, Int32Type, Int16Type, Int8Type, UInt64Type, UInt32Type, UInt16Type, UInt8Type);
        let values = self.floats(name)?;
        Ok(values.into_iter().map(|v| v as i64).collect())
    }

    /// A boolean column without nulls (integers: non-zero is true).
    pub fn bools(&self, name: &str) -> Result<Vec<bool>, StageError> {
        let col = self.column(name)?;
        if let Some(a) = col.as_boolean_opt() {
            return a.iter().enumerate().map(|(row, v)| v.ok_or_else(|| self.null_error(name, row))).collect();
        }
        Ok(self.integers(name)?.into_iter().map(|v| v != 0).collect())
    }

    /// `read(name)`, or `default` in every row when the column is absent (the optional
    /// columns of a table written by another tool).
    fn or_default<T: Clone>(
        &self,
        name: &str,
        default: T,
        read: fn(&Self, &str) -> Result<Vec<T>, StageError>,
    ) -> Result<Vec<T>, StageError> {
        if self.has_column(name) {
            read(self, name)
        } else {
            Ok(vec![default; self.num_rows()])
        }
    }

    /// Like [`Table::integers`], or `default` in every row when the column is absent.
    pub fn integers_or(&self, name: &str, default: i64) -> Result<Vec<i64>, StageError> {
        self.or_default(name, default, Self::integers)
    }

    /// Like [`Table::floats`], or `default` in every row when the column is absent.
    pub fn floats_or(&self, name: &str, default: f64) -> Result<Vec<f64>, StageError> {
        self.or_default(name, default, Self::floats)
    }

    /// Like [`Table::bools`], or `default` in every row when the column is absent.
    pub fn bools_or(&self, name: &str, default: bool) -> Result<Vec<bool>, StageError> {
        self.or_default(name, default, Self::bools)
    }

    /// Like [`Table::strings`], or `default` in every row when the column is absent.
    pub fn strings_or(&self, name: &str, default: &str) -> Result<Vec<String>, StageError> {
        self.or_default(name, default.to_owned(), Self::strings)
    }
}

/// An int32 column of `value(row)` for every row: our tables store small integers as int32,
/// and a value that does not fit is an error naming the file, the row's clip and the column
/// (never a silent wrap).
pub fn int32_column<R>(path: &Path, rows: &[R], name: &str, clip_id: fn(&R) -> &str, value: fn(&R) -> i64) -> Result<ArrayRef, StageError> {
    let values = rows
        .iter()
        .map(|r| {
            i32::try_from(value(r)).map_err(|_| {
                StageError::msg(format!("{}: clip `{}`: column `{name}` value {} does not fit int32", path.display(), clip_id(r), value(r)))
            })
        })
        .collect::<Result<Vec<i32>, _>>()?;
    Ok(Arc::new(arrow_array::Int32Array::from(values)))
}

/// A record batch of named columns; a column is nullable exactly when it holds a null (as
/// `RecordBatch::try_from_iter`), so the same data always gives the same file bytes.
pub fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch, StageError> {
    let fields: Vec<Field> = columns.iter().map(|(name, a)| Field::new(*name, a.data_type().clone(), a.null_count() > 0)).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| StageError::msg(format!("building a table: {e}")))
}

/// Writes one record batch as a snappy-compressed Parquet file.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), StageError> {
    let fail = |e: &dyn std::fmt::Display| StageError::msg(format!("{}: cannot write Parquet: {e}", path.display()));
    let file = File::create(path).map_err(|e| StageError::with_source(format!("{}: cannot create", path.display()), e))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(|e| fail(&e))?;
    writer.write(batch).map_err(|e| fail(&e))?;
    writer.close().map_err(|e| fail(&e))?;
    Ok(())
}

/// [`batch`] then [`write_parquet`].
pub fn write_columns(path: &Path, columns: Vec<(&str, ArrayRef)>) -> Result<(), StageError> {
    let batch = batch(columns).map_err(|e| StageError::msg(format!("{}: {}", path.display(), e.message)))?;
    write_parquet(path, &batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Float32Array, Int32Array, Int64Array, StringArray};

    #[test]
    fn round_trip_types_nulls_and_missing_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write_columns(
            &path,
            vec![
                ("name", Arc::new(StringArray::from(vec!["x", "y"])) as ArrayRef),
                ("n", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
                ("big", Arc::new(Int64Array::from(vec![1 << 60, 3])) as ArrayRef),
                ("f", Arc::new(Float32Array::from(vec![Some(0.5), None])) as ArrayRef),
                ("b", Arc::new(BooleanArray::from(vec![true, false])) as ArrayRef),
            ],
        )
        .unwrap();
        let t = Table::read(&path).unwrap();
        assert_eq!(t.column_names(), ["name", "n", "big", "f", "b"]);
        assert_eq!(t.strings("name").unwrap(), vec!["x", "y"]);
        assert_eq!(t.integers("n").unwrap(), vec![1, 2]);
        assert_eq!(t.integers("big").unwrap(), vec![1 << 60, 3], "integers are exact past 2^53");
        assert_eq!(t.numbers("f").unwrap(), vec![Some(0.5), None]);
        assert_eq!(t.bools("b").unwrap(), vec![true, false]);
        assert!(t.integers("f").unwrap_err().message.contains("null in row 1"));
        assert_eq!(t.integers_or("absent", 7).unwrap(), vec![7, 7]);
        let err = t.strings("nope").unwrap_err();
        assert!(err.message.contains("t.parquet") && err.message.contains("missing column `nope`"), "{}", err.message);
        assert!(t.strings("n").unwrap_err().message.contains("expected a string"));
    }

    #[test]
    fn nullability_follows_the_data() {
        let b = batch(vec![
            ("full", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
            ("gap", Arc::new(Int32Array::from(vec![None])) as ArrayRef),
        ])
        .unwrap();
        let nullable: Vec<bool> = b.schema().fields().iter().map(|f| f.is_nullable()).collect();
        assert_eq!(nullable, [false, true]);
    }

    #[test]
    fn a_file_that_is_not_parquet_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        std::fs::write(&path, b"not parquet").unwrap();
        let err = Table::read(&path).err().unwrap();
        assert!(err.message.contains("bad.parquet") && err.message.contains("Parquet"), "{}", err.chain());
        let err = Table::read(&dir.path().join("absent.parquet")).err().unwrap();
        assert!(err.message.contains("absent.parquet") && err.message.contains("cannot open"), "{}", err.chain());
    }
}
