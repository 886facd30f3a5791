//! The per-epoch training history, written as `history.parquet` and `history.csv` with the
//! same columns: epoch (1-based), train_loss, train_accuracy, val_loss, val_accuracy, lr (the
//! rate the epoch trained with), seconds (wall time of the epoch, validation included).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int32Array};
use stage_api::StageError;

use crate::table::{write_parquet, write_text};

/// One epoch's numbers.
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
    let batch = crate::table::batch(columns)?;
    write_parquet(&dir.join("history.parquet"), &batch)?;

    let mut csv = String::from("epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds\n");
    for r in records {
        let _ =
            writeln!(csv, "{},{},{},{},{},{},{:.3}", r.epoch, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.lr, r.seconds);
    }
    write_text(&dir.join("history.csv"), &csv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Table;

    #[test]
    fn parquet_and_csv_agree() {
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
        let table = Table::read(&dir.path().join("history.parquet")).unwrap();
        assert_eq!(table.ints("epoch").unwrap(), [1, 2]);
        assert_eq!(table.floats("val_accuracy").unwrap(), [0.25, 0.5]);
        let csv = std::fs::read_to_string(dir.path().join("history.csv")).unwrap();
        assert_eq!(csv.lines().nth(2).unwrap(), "2,1.5,0.5,1.25,0.5,0.0001,2.000");
    }
}
