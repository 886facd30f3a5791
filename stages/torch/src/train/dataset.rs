//! The training data of one run: the cache's clips joined with the split's assignment,
//! as training and validation [`Example`]s, with the class checks done up front.
//!
//! Classes are RAVDESS's eight emotions in label order ([`crate::CLASS_NAMES`]), so output
//! index = label everywhere. A class the cache has but the training split lacks is an error
//! naming it (the model could never learn it); a class absent from the whole cache (filtered
//! out by `scan`'s `emotions`) is allowed and simply never seen.

use std::collections::HashMap;
use std::path::Path;

use stage_api::StageError;

use super::data::Example;
use crate::cache::{cache_geometry, read_cache_index, ClipLoader};
use crate::split::{read_assignment, Split};
use crate::CLASS_NAMES;

/// Everything the epoch loop reads.
pub struct TrainingData {
    pub loader: ClipLoader,
    pub train: Vec<Example>,
    pub val: Vec<Example>,
    pub frames: i64,
    pub size: i64,
    /// Training clips per class (index = label).
    pub train_counts: Vec<usize>,
    /// Clips per class in the whole cache.
    pub cache_counts: Vec<usize>,
}

impl TrainingData {
    /// Reads the `extract` output `cache_dir` and the `split` output `split_dir`.
    pub fn open(cache_dir: &Path, split_dir: &Path) -> Result<Self, StageError> {
        let clips = read_cache_index(cache_dir)?;
        let (frames, size) = cache_geometry(cache_dir, &clips)?;
        let num_classes = CLASS_NAMES.len();
        let mut cache_counts = vec![0usize; num_classes];
        for c in &clips {
            let class = usize::try_from(c.label).ok().filter(|&l| l < num_classes).ok_or_else(|| {
                StageError::msg(format!(
                    "{}: clip `{}` has label {}, expected 0..{}",
                    cache_dir.join(crate::cache::INDEX_FILE).display(),
                    c.clip_id,
                    c.label,
                    num_classes - 1
                ))
            })?;
            cache_counts[class] += 1;
        }
        let labels: HashMap<&str, i64> = clips.iter().map(|c| (c.clip_id.as_str(), c.label)).collect();

        let assignment = read_assignment(split_dir)?;
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for a in &assignment {
            let Some(&label) = labels.get(a.clip_id.as_str()) else {
                return Err(StageError::msg(format!(
                    "{}: clip `{}` is not in the tensor cache {}; was the split made from another `extract`?",
                    split_dir.join(crate::split::ASSIGNMENT_FILE).display(),
                    a.clip_id,
                    cache_dir.display()
                )));
            };
            let example = Example { clip_id: a.clip_id.clone(), class: label };
            match a.split {
                Split::Train => train.push(example),
                Split::Val => val.push(example),
                Split::Test => {}
            }
        }
        let split_file = split_dir.join(crate::split::ASSIGNMENT_FILE);
        if train.len() < 2 {
            return Err(StageError::msg(format!(
                "{}: the training split has {} clip(s), need at least 2",
                split_file.display(),
                train.len()
            )));
        }
        if val.is_empty() {
            return Err(StageError::msg(format!("{}: the validation split is empty", split_file.display())));
        }
        let mut train_counts = vec![0usize; num_classes];
        for e in &train {
            train_counts[e.class as usize] += 1;
        }
        let empty: Vec<String> = (0..num_classes)
            .filter(|&c| train_counts[c] == 0 && cache_counts[c] > 0)
            .map(|c| format!("{c} ({}, {} clip(s) in other splits)", CLASS_NAMES[c], cache_counts[c]))
            .collect();
        if !empty.is_empty() {
            return Err(StageError::msg(format!(
                "{}: the training split has no clip of class {}; move actors between splits",
                split_file.display(),
                empty.join(", ")
            )));
        }
        // Map only the clips this run reads.
        let wanted: std::collections::HashSet<&str> = train.iter().chain(&val).map(|e| e.clip_id.as_str()).collect();
        let used: Vec<_> = clips.into_iter().filter(|c| wanted.contains(c.clip_id.as_str())).collect();
        let loader = ClipLoader::open(cache_dir, &used)?;
        Ok(Self { loader, train, val, frames, size, train_counts, cache_counts })
    }

    /// Inverse-frequency class weights `n / (k * n_c)` over the k classes present in training
    /// (sklearn's "balanced"); 0 for classes without training clips.
    pub fn class_weights(&self) -> Vec<f64> {
        let n: usize = self.train_counts.iter().sum();
        let k = self.train_counts.iter().filter(|&&c| c > 0).count();
        self.train_counts.iter().map(|&c| if c == 0 { 0.0 } else { n as f64 / (k as f64 * c as f64) }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::IndexRow;
    use crate::split::Assigned;
    use stage_formats::testing::{write_cache, FakeClip};

    #[test]
    fn balanced_class_weights() {
        let dir = tempfile::tempdir().unwrap();
        let clip = |id: &str, actor, label| FakeClip { clip_id: id.into(), actor, label, data: vec![0; 2 * 16 * 16 * 3] };
        // Training (actor 1): three of class 0, one of class 2.
        let clips = [clip("a", 1, 0), clip("b", 1, 0), clip("c", 1, 0), clip("d", 1, 2), clip("e", 2, 0)];
        write_cache(&dir.path().join("x"), 2, 16, &clips).unwrap();
        let split_dir = dir.path().join("s");
        std::fs::create_dir_all(&split_dir).unwrap();
        // A hand-written assignment: actor 1 trains, actor 2 validates.
        let index = read_cache_index(&dir.path().join("x")).unwrap();
        write_assignment(&split_dir, &index, |actor| if actor == 1 { Split::Train } else { Split::Val });
        let data = TrainingData::open(&dir.path().join("x"), &split_dir).unwrap();
        let w = data.class_weights();
        // n = 4, k = 2: class 0 -> 4 / (2 * 3), class 2 -> 4 / (2 * 1), others 0.
        assert!((w[0] - 4.0 / 6.0).abs() < 1e-12 && (w[2] - 2.0).abs() < 1e-12);
        assert_eq!((w[1], w[7]), (0.0, 0.0));
    }

    fn write_assignment(dir: &Path, clips: &[IndexRow], split_of: impl Fn(i64) -> Split) {
        let rows: Vec<Assigned> = clips
            .iter()
            .map(|c| Assigned { clip_id: c.clip_id.clone(), actor: c.actor, label: c.label, split: split_of(c.actor) })
            .collect();
        stage_formats::assignment::write_assignment(&dir.join(crate::split::ASSIGNMENT_FILE), &rows).unwrap();
    }
}
