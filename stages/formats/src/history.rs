//! `history.parquet` (and `history.csv`, the same columns): the `train` stage's numbers per
//! epoch, which `evaluate` and `report` read for the training curves.
//!
//! Columns: epoch (1-based), train_loss, train_accuracy, val_loss, val_accuracy, lr (the rate
//! the epoch trained with), seconds (wall time of the epoch, validation included).
//!
//! The writer records every number ([`EpochRecord`]); the reader gives [`HistoryRow`]s, whose
//! numbers may be missing: a model trained outside the pipeline may log fewer (any numeric
//! type; nulls allowed except in `epoch`; `lr` and `seconds` may be absent).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array};
use stage_api::StageError;

use crate::json::write_text;
use crate::parquet::{write_columns, Table};

/// The history in a `train` output.
pub const HISTORY_FILE: &str = "history.parquet";
/// Its CSV twin, for people.
pub const HISTORY_CSV: &str = "history.csv";

/// One finished epoch, as the `train` stage records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub lr: f64,
    pub seconds: f64,
}

impl EpochRecord {
    /// The record without its timing, for comparing two runs.
    pub fn without_time(&self) -> EpochRecord {
        EpochRecord { seconds: 0.0, ..self.clone() }
    }

    /// The one-line progress note.
    pub fn line(&self, epochs: usize) -> String {
        format!(
            "epoch {}/{epochs}: loss {:.3} acc {:.3} | val {:.3} acc {:.3} | lr {:.1e} | {:.1}s",
            self.epoch, self.train_loss, self.train_accuracy, self.val_loss, self.val_accuracy, self.lr, self.seconds
        )
    }
}

/// Writes `history.parquet` and `history.csv` into `dir`.
pub fn write_history(dir: &Path, records: &[EpochRecord]) -> Result<(), StageError> {
    let float = |f: fn(&EpochRecord) -> f64| Arc::new(Float64Array::from_iter_values(records.iter().map(f))) as ArrayRef;
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("epoch", Arc::new(Int32Array::from_iter_values(records.iter().map(|r| r.epoch as i32)))),
        ("train_loss", float(|r| r.train_loss)),
        ("train_accuracy", float(|r| r.train_accuracy)),
        ("val_loss", float(|r| r.val_loss)),
        ("val_accuracy", float(|r| r.val_accuracy)),
        ("lr", float(|r| r.lr)),
        ("seconds", float(|r| r.seconds)),
    ];
    write_columns(&dir.join(HISTORY_FILE), columns)?;

    let mut csv = String::from("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n");
    for r in records {
        let _ =
            writeln!(csv, "{},{},{},{},{},{},{:.3}", r.epoch, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.lr, r.seconds);
    }
    write_text(&dir.join(HISTORY_CSV), &csv)
}

/// One epoch of a history as read back; a number the writer did not record is `None`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistoryRow {
    pub epoch: i64,
    pub train_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub val_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    pub lr: Option<f64>,
    pub seconds: Option<f64>,
}

/// The per-epoch history of one training run.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct History {
    pub epochs: Vec<HistoryRow>,
}

/// Reads a `history.parquet`.
pub fn read_history(path: &Path) -> Result<History, StageError> {
    let table = Table::read(path)?;
    let epoch = table.integers("epoch")?;
    let column = |name: &str, required: bool| -> Result<Vec<Option<f64>>, StageError> {
        if required || table.has_column(name) {
            table.numbers(name)
        } else {
            Ok(vec![None; epoch.len()])
        }
    };
    let train_loss = column("train_loss", true)?;
    let train_accuracy = column("train_accuracy", true)?;
    let val_loss = column("val_loss", true)?;
    let val_accuracy = column("val_accuracy", true)?;
    let lr = column("lr", false)?;
    let seconds = column("seconds", false)?;
    let epochs = (0..epoch.len())
        .map(|i| HistoryRow {
            epoch: epoch[i],
            train_loss: train_loss[i],
            train_accuracy: train_accuracy[i],
            val_loss: val_loss[i],
            val_accuracy: val_accuracy[i],
            lr: lr[i],
            seconds: seconds[i],
        })
        .collect();
    Ok(History { epochs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parquet_csv_and_reader_agree() {
        let dir = tempfile::tempdir().unwrap();
        let r = |epoch, acc| EpochRecord {
            epoch,
            train_loss: 1.5,
            train_accuracy: acc,
            val_loss: 1.25,
            val_accuracy: acc,
            lr: 1e-4,
            seconds: 2.0,
        };
        write_history(dir.path(), &[r(1, 0.25), r(2, 0.5)]).unwrap();
        let table = Table::read(&dir.path().join(HISTORY_FILE)).unwrap();
        assert_eq!(table.integers("epoch").unwrap(), [1, 2]);
        assert_eq!(table.floats("val_accuracy").unwrap(), [0.25, 0.5]);
        let csv = std::fs::read_to_string(dir.path().join(HISTORY_CSV)).unwrap();
        assert_eq!(csv.lines().nth(2).unwrap(), "2,1.5,0.5,1.25,0.5,0.0001,2.000");
        let back = read_history(&dir.path().join(HISTORY_FILE)).unwrap();
        assert_eq!(
            back.epochs[1],
            HistoryRow {
                epoch: 2,
                train_loss: Some(1.5),
                train_accuracy: Some(0.5),
                val_loss: Some(1.25),
                val_accuracy: Some(0.5),
                lr: Some(1e-4),
                seconds: Some(2.0)
            }
        );
    }

    #[test]
    fn optional_columns_and_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HISTORY_FILE);
        let f = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
        write_columns(
            &path,
            vec![
                ("epoch", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
                ("train_loss", f(vec![Some(2.0)])),
                ("train_accuracy", f(vec![None])),
                ("val_loss", f(vec![Some(2.1)])),
                ("val_accuracy", f(vec![Some(0.3)])),
            ],
        )
        .unwrap();
        let h = read_history(&path).unwrap();
        assert_eq!((h.epochs[0].train_accuracy, h.epochs[0].lr, h.epochs[0].seconds), (None, None, None));
        std::fs::write(&path, "{}").unwrap();
        assert!(read_history(&path).unwrap_err().message.contains(HISTORY_FILE));
    }
}
