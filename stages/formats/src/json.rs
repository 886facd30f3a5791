//! JSON and text files stages exchange, with errors that name the file.

use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};
use stage_api::StageError;

/// Writes `text` to `path`.
pub fn write_text(path: &Path, text: &str) -> Result<(), StageError> {
    std::fs::write(path, text).map_err(|e| StageError::with_source(format!("{}: cannot write", path.display()), e))
}

/// Writes `value` as pretty JSON with a trailing newline.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), StageError> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| StageError::with_source(format!("{}: cannot encode JSON", path.display()), e))?;
    write_text(path, &(text + "\n"))
}

/// Reads a JSON file into `T`: a missing file, a file that is not JSON and JSON of the wrong
/// shape are each an error naming the file (never a default value).
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, StageError> {
    let text = std::fs::read_to_string(path).map_err(|e| StageError::with_source(format!("{}: cannot read", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| StageError::with_source(format!("{}: not the expected JSON", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Card {
        arch: String,
        frames: u32,
    }

    #[test]
    fn round_trip_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.json");
        let card = Card { arch: "r3d18".into(), frames: 10 };
        write_json(&path, &card).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("}\n"));
        assert_eq!(read_json::<Card>(&path).unwrap(), card);
        std::fs::write(&path, "{\"arch\": 3}").unwrap();
        let e = read_json::<Card>(&path).unwrap_err();
        assert!(e.message.contains("card.json") && e.message.contains("not the expected JSON"), "{}", e.chain());
        let e = read_json::<Card>(&dir.path().join("gone.json")).unwrap_err();
        assert!(e.message.contains("gone.json") && e.message.contains("cannot read"), "{}", e.chain());
    }
}
