//! Unpacking a verified zip into the dataset folder without ever leaving half a file under a final name.

use std::path::{Path, PathBuf};

use stage_api::StageError;

/// Extracts `zip` into the private folder `staging` (emptied first), then renames every file into `dest`
/// at the same relative path. Entries that would escape the folder are refused. Returns the file count.
pub fn unpack_into(zip: &Path, dest: &Path, staging: &Path) -> Result<usize, StageError> {
    let err = |what: String| move |e: zip::result::ZipError| StageError::with_source(what, e);
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| StageError::with_source(format!("clearing {}", staging.display()), e))?;
    }
    std::fs::create_dir_all(staging).map_err(|e| StageError::with_source(format!("creating {}", staging.display()), e))?;
    let file = std::fs::File::open(zip).map_err(|e| StageError::with_source(format!("opening {}", zip.display()), e))?;
    let mut archive = zip::ZipArchive::new(file).map_err(err(format!("{} is not a readable zip", zip.display())))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(err(format!("reading entry {i} of {}", zip.display())))?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(StageError::msg(format!(
                "{}: entry `{}` points outside the folder; refusing to unpack",
                zip.display(),
                entry.name().map(|n| n.into_owned()).unwrap_or_default()
            )));
        };
        let target = staging.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| StageError::with_source(format!("creating {}", target.display()), e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StageError::with_source(format!("creating {}", parent.display()), e))?;
        }
        let mut out = std::fs::File::create(&target).map_err(|e| StageError::with_source(format!("creating {}", target.display()), e))?;
        std::io::copy(&mut entry, &mut out)
            .map_err(|e| StageError::with_source(format!("unpacking `{}` from {}", rel.display(), zip.display()), e))?;
        files.push(rel);
    }
    for rel in &files {
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| StageError::with_source(format!("creating {}", parent.display()), e))?;
        }
        std::fs::rename(staging.join(rel), &target)
            .map_err(|e| StageError::with_source(format!("moving {} into {}", rel.display(), dest.display()), e))?;
    }
    let _ = std::fs::remove_dir_all(staging);
    Ok(files.len())
}
