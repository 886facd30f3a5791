//! Small file helpers of the report: CSV writing, and the errors that name a file. Parquet and
//! JSON go through `stage-formats`, the one reader and writer of the files stages exchange.

use std::path::Path;

use stage_api::StageError;

pub(crate) use stage_formats::json::{read_json, write_json};
pub(crate) use stage_formats::parquet::Table;

/// `StageError` for a failed operation on `path`.
pub(crate) fn file_error(what: &str, path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::with_source(format!("{what} {}", path.display()), e)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
