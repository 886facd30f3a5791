//! `assignment.parquet`: the `split` stage's clip → train/val/test table, which `train`,
//! `evaluate` and models trained elsewhere (`python/pipeline_dataset.py`) read.
//!
//! Columns: clip_id (utf8), actor (int32), label (int32), split (`train`, `val`, `test`).

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, StringArray};
use serde::{Deserialize, Serialize};
use stage_api::StageError;

use crate::parquet::{int32_column, write_columns, Table};

/// The assignment file in a `split` output.
pub const ASSIGNMENT_FILE: &str = "assignment.parquet";

/// One of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Split::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One row of `assignment.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assigned {
    pub clip_id: String,
    pub actor: i64,
    pub label: i64,
    pub split: Split,
}

/// Writes `assignment.parquet` (rows in the given order).
pub fn write_assignment(path: &Path, rows: &[Assigned]) -> Result<(), StageError> {
    let int = |name: &str, f: fn(&Assigned) -> i64| int32_column(path, rows, name, |r| &r.clip_id, f);
    write_columns(
        path,
        vec![
            ("clip_id", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.clip_id.as_str()))) as ArrayRef),
            ("actor", int("actor", |r| r.actor)?),
            ("label", int("label", |r| r.label)?),
            ("split", Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.split.as_str()))) as ArrayRef),
        ],
    )
}

/// Reads `<dir>/assignment.parquet` (a `split` output).
pub fn read_assignment(dir: &Path) -> Result<Vec<Assigned>, StageError> {
    let path = dir.join(ASSIGNMENT_FILE);
    if !path.is_file() {
        return Err(StageError::msg(format!("{}: missing; is `{}` a `split` output?", path.display(), dir.display())));
    }
    let table = Table::read(&path)?;
    let ids = table.strings("clip_id")?;
    let actors = table.integers("actor")?;
    let labels = table.integers("label")?;
    let splits = table.strings("split")?;
    ids.into_iter()
        .zip(actors)
        .zip(labels)
        .zip(splits)
        .map(|(((clip_id, actor), label), split)| {
            let split = Split::parse(&split)
                .ok_or_else(|| StageError::msg(format!("{}: clip `{clip_id}` has unknown split `{split}`", path.display())))?;
            Ok(Assigned { clip_id, actor, label, split })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int32Array;

    #[test]
    fn round_trip_and_bad_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![
            Assigned { clip_id: "a".into(), actor: 1, label: 0, split: Split::Train },
            Assigned { clip_id: "b".into(), actor: 23, label: 7, split: Split::Test },
        ];
        write_assignment(&dir.path().join(ASSIGNMENT_FILE), &rows).unwrap();
        assert_eq!(read_assignment(dir.path()).unwrap(), rows);

        let odd = [Assigned { clip_id: "c".into(), actor: 1, label: 0, split: Split::Val }];
        write_assignment(&dir.path().join(ASSIGNMENT_FILE), &odd).unwrap();
        let text = |v: &str| Arc::new(StringArray::from(vec![v])) as ArrayRef;
        let one = |v: i32| Arc::new(Int32Array::from(vec![v])) as ArrayRef;
        let columns = vec![("clip_id", text("c")), ("actor", one(1)), ("label", one(0)), ("split", text("holdout"))];
        write_columns(&dir.path().join(ASSIGNMENT_FILE), columns).unwrap();
        let err = read_assignment(dir.path()).unwrap_err();
        assert!(err.message.contains("unknown split `holdout`"), "{}", err.message);
        let err = read_assignment(&dir.path().join("nowhere")).unwrap_err();
        assert!(err.message.contains("a `split` output"), "{}", err.message);
    }
}
