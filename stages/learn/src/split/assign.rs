//! Which actor goes to which split: the pure rule, without files.
//!
//! Two modes:
//! - **Lists**: validation and test actors are given (the study's 21–22 and 23–24 by default);
//!   training is either a given list or every other actor in the cache.
//! - **K-fold** (subject-wise cross-validation): the actors present in the cache, sorted (or
//!   shuffled with a seed), are cut into `folds` contiguous groups as even as possible; fold
//!   `i` tests on group `i`, validates on the next group (or on the next
//!   `val_actors_per_fold` actors, cyclically) and trains on the rest. Every actor is in
//!   exactly one test fold. A published protocol's groups can be given instead
//!   (`fold_actors`, one list of test actors per fold); cache actors in no group then only
//!   ever train.
//!
//! Either way the result is checked: every named actor exists in the cache, no actor is in
//! two splits, and no split is empty.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use stage_api::StageError;

/// The study's validation actors.
pub const STUDY_VAL_ACTORS: [i64; 2] = [21, 22];
/// The study's test actors.
pub const STUDY_TEST_ACTORS: [i64; 2] = [23, 24];

/// How to split.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitRule {
    Lists {
        /// `None`: every cache actor that is not in `val` or `test`.
        train: Option<Vec<i64>>,
        val: Vec<i64>,
        test: Vec<i64>,
    },
    KFold {
        folds: usize,
        fold: usize,
        /// `None`: the group after the test group.
        val_actors_per_fold: Option<usize>,
        /// `None`: sorted actor order; `Some`: shuffled with this seed.
        seed: Option<u64>,
        /// The test actors of each fold, as published; `None`: cut from the cache's actors.
        groups: Option<Vec<Vec<i64>>>,
    },
}

/// Actors per split (each sorted), plus cache actors left out (lists mode only).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ActorSplit {
    pub train: Vec<i64>,
    pub val: Vec<i64>,
    pub test: Vec<i64>,
    pub unassigned: Vec<i64>,
}

/// Applies `rule` to the actors found in the cache.
pub fn assign_actors(rule: &SplitRule, cache_actors: &BTreeSet<i64>) -> Result<ActorSplit, StageError> {
    let split = match rule {
        SplitRule::Lists { train, val, test } => lists(train.as_deref(), val, test, cache_actors)?,
        SplitRule::KFold { folds, fold, val_actors_per_fold, seed, groups: None } => {
            kfold(*folds, *fold, *val_actors_per_fold, *seed, cache_actors)?
        }
        SplitRule::KFold { fold, val_actors_per_fold, groups: Some(groups), .. } => {
            given_folds(groups, *fold, *val_actors_per_fold, cache_actors)?
        }
    };
    check_disjoint_and_non_empty(&split)?;
    Ok(split)
}

fn lists(train: Option<&[i64]>, val: &[i64], test: &[i64], cache: &BTreeSet<i64>) -> Result<ActorSplit, StageError> {
    let val = checked_list("val_actors", val, cache)?;
    let test = checked_list("test_actors", test, cache)?;
    let train = match train {
        Some(list) => checked_list("train_actors", list, cache)?,
        None => cache.iter().copied().filter(|a| !val.contains(a) && !test.contains(a)).collect(),
    };
    let unassigned = cache.iter().copied().filter(|a| !train.contains(a) && !val.contains(a) && !test.contains(a)).collect();
    Ok(ActorSplit { train, val, test, unassigned })
}

/// Sorts and de-duplicates `list`, failing on actors the cache does not have.
fn checked_list(name: &str, list: &[i64], cache: &BTreeSet<i64>) -> Result<Vec<i64>, StageError> {
    let set: BTreeSet<i64> = list.iter().copied().collect();
    let absent: Vec<i64> = set.iter().copied().filter(|a| !cache.contains(a)).collect();
    if !absent.is_empty() {
        return Err(StageError::msg(format!(
            "`{name}` names actor(s) {} that are not in the tensor cache (actors in the cache: {})",
            join(&absent),
            join(&cache.iter().copied().collect::<Vec<_>>())
        )));
    }
    Ok(set.into_iter().collect())
}

fn kfold(
    folds: usize,
    fold: usize,
    val_per_fold: Option<usize>,
    seed: Option<u64>,
    cache: &BTreeSet<i64>,
) -> Result<ActorSplit, StageError> {
    let n = cache.len();
    if folds < 2 {
        return Err(StageError::msg(format!("`folds` must be at least 2, got {folds}")));
    }
    if fold >= folds {
        return Err(StageError::msg(format!("`fold` must be in 0..{folds} (0-based), got {fold}")));
    }
    if n < folds {
        return Err(StageError::msg(format!("{folds} folds need at least {folds} actors, the cache has {n}")));
    }
    let mut actors: Vec<i64> = cache.iter().copied().collect();
    if let Some(seed) = seed {
        actors.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }
    // Group g holds actors[bounds[g]..bounds[g + 1]]; the first n % folds groups get one more.
    let bounds: Vec<usize> = (0..=folds).map(|g| g * (n / folds) + g.min(n % folds)).collect();
    let group = |g: usize| actors[bounds[g]..bounds[g + 1]].to_vec();
    let test = group(fold);
    let val = match val_per_fold {
        None => group((fold + 1) % folds),
        Some(v) => {
            if v == 0 || v + test.len() >= n {
                return Err(StageError::msg(format!(
                    "`val_actors_per_fold` = {v} leaves no validation or no training actors \
                     ({n} actors, {} in the test fold)",
                    test.len()
                )));
            }
            (0..v).map(|k| actors[(bounds[fold + 1] + k) % n]).collect()
        }
    };
    let train = actors.iter().copied().filter(|a| !test.contains(a) && !val.contains(a)).collect();
    let sorted = |mut v: Vec<i64>| {
        v.sort_unstable();
        v
    };
    Ok(ActorSplit { train: sorted(train), val: sorted(val), test: sorted(test), unassigned: Vec::new() })
}

/// Fold `fold` of published groups: test on its group, validate on the next group (or its
/// first `val_per_fold` actors), train on every other cache actor.
fn given_folds(groups: &[Vec<i64>], fold: usize, val_per_fold: Option<usize>, cache: &BTreeSet<i64>) -> Result<ActorSplit, StageError> {
    let folds = groups.len();
    if fold >= folds {
        return Err(StageError::msg(format!("`fold` must be in 0..{folds} (0-based, one per `fold_actors` group), got {fold}")));
    }
    let mut seen = BTreeSet::new();
    for (g, group) in groups.iter().enumerate() {
        checked_list(&format!("fold_actors[{g}]"), group, cache)?;
        if let Some(twice) = group.iter().find(|a| !seen.insert(**a)) {
            return Err(StageError::msg(format!("`fold_actors`: actor {twice} is in two folds")));
        }
    }
    let test = checked_list("fold_actors", &groups[fold], cache)?;
    let next = checked_list("fold_actors", &groups[(fold + 1) % folds], cache)?;
    let val = match val_per_fold {
        None => next,
        Some(v) if v == 0 || v > next.len() => {
            return Err(StageError::msg(format!(
                "`val_actors_per_fold` = {v}: the next fold's group has {} actors ({})",
                next.len(),
                join(&next)
            )))
        }
        Some(v) => next[..v].to_vec(),
    };
    let train = cache.iter().copied().filter(|a| !test.contains(a) && !val.contains(a)).collect();
    Ok(ActorSplit { train, val, test, unassigned: Vec::new() })
}

fn check_disjoint_and_non_empty(split: &ActorSplit) -> Result<(), StageError> {
    let named = [("train", &split.train), ("val", &split.val), ("test", &split.test)];
    for (i, (a_name, a)) in named.iter().enumerate() {
        for (b_name, b) in &named[i + 1..] {
            let shared: Vec<i64> = a.iter().copied().filter(|x| b.contains(x)).collect();
            if !shared.is_empty() {
                return Err(StageError::msg(format!("actor(s) {} are in both the {a_name} and the {b_name} split", join(&shared))));
            }
        }
    }
    for (name, actors) in named {
        if actors.is_empty() {
            return Err(StageError::msg(format!("the {name} split has no actors")));
        }
    }
    Ok(())
}

pub(crate) fn join(actors: &[i64]) -> String {
    actors.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actors(range: std::ops::RangeInclusive<i64>) -> BTreeSet<i64> {
        range.collect()
    }

    fn study() -> SplitRule {
        SplitRule::Lists { train: None, val: STUDY_VAL_ACTORS.to_vec(), test: STUDY_TEST_ACTORS.to_vec() }
    }

    #[test]
    fn study_split_on_full_ravdess() {
        let s = assign_actors(&study(), &actors(1..=24)).unwrap();
        assert_eq!(s.train, (1..=20).collect::<Vec<_>>());
        assert_eq!((s.val, s.test), (vec![21, 22], vec![23, 24]));
        assert!(s.unassigned.is_empty());
    }

    #[test]
    fn explicit_lists_leave_other_actors_out() {
        let rule = SplitRule::Lists { train: Some(vec![3, 1, 1]), val: vec![2], test: vec![4] };
        let s = assign_actors(&rule, &actors(1..=6)).unwrap();
        assert_eq!((s.train, s.unassigned), (vec![1, 3], vec![5, 6]));
    }

    #[test]
    fn absent_overlapping_and_empty_are_errors_naming_actors() {
        let err = assign_actors(&study(), &actors(1..=6)).unwrap_err();
        assert!(err.message.contains("`val_actors` names actor(s) 21, 22"), "{}", err.message);
        let rule = SplitRule::Lists { train: Some(vec![1, 2]), val: vec![2, 3], test: vec![4] };
        let err = assign_actors(&rule, &actors(1..=6)).unwrap_err();
        assert_eq!(err.message, "actor(s) 2 are in both the train and the val split");
        let rule = SplitRule::Lists { train: None, val: vec![1, 2], test: vec![3] };
        let err = assign_actors(&rule, &actors(1..=3)).unwrap_err();
        assert_eq!(err.message, "the train split has no actors");
    }

    #[test]
    fn kfold_covers_every_actor_once_as_test_and_is_disjoint() {
        for seed in [None, Some(7)] {
            let mut tested = Vec::new();
            for fold in 0..5 {
                let rule = SplitRule::KFold { folds: 5, fold, val_actors_per_fold: None, seed, groups: None };
                let s = assign_actors(&rule, &actors(1..=24)).unwrap();
                assert_eq!(s.train.len() + s.val.len() + s.test.len(), 24);
                assert!(s.test.len() == 4 || s.test.len() == 5);
                tested.extend(s.test);
            }
            tested.sort_unstable();
            assert_eq!(tested, (1..=24).collect::<Vec<_>>());
        }
    }

    #[test]
    fn published_fold_groups_test_each_group_once() {
        let cache: BTreeSet<i64> = (1..=24).collect();
        let groups: Vec<Vec<i64>> = (0..6).map(|g| (g * 4 + 1..=g * 4 + 4).collect()).collect();
        let mut tested = Vec::new();
        for fold in 0..6 {
            let rule = SplitRule::KFold { folds: 6, fold, val_actors_per_fold: Some(2), seed: None, groups: Some(groups.clone()) };
            let split = assign_actors(&rule, &cache).unwrap();
            assert_eq!(split.test, groups[fold]);
            assert_eq!(split.val, groups[(fold + 1) % 6][..2].to_vec());
            assert_eq!(split.train.len(), 18);
            tested.extend(split.test);
        }
        tested.sort_unstable();
        assert_eq!(tested, (1..=24).collect::<Vec<_>>());
        // Equal to the cut of the sorted actors, which is the literature's 1-4, 5-8, ...
        let cut = SplitRule::KFold { folds: 6, fold: 2, val_actors_per_fold: Some(2), seed: None, groups: None };
        let given = SplitRule::KFold { folds: 6, fold: 2, val_actors_per_fold: Some(2), seed: None, groups: Some(groups.clone()) };
        assert_eq!(assign_actors(&cut, &cache).unwrap(), assign_actors(&given, &cache).unwrap());

        let twice =
            SplitRule::KFold { folds: 2, fold: 0, val_actors_per_fold: None, seed: None, groups: Some(vec![vec![1, 2], vec![2, 3]]) };
        assert!(assign_actors(&twice, &cache).unwrap_err().to_string().contains("actor 2 is in two folds"));
        let absent = SplitRule::KFold { folds: 2, fold: 0, val_actors_per_fold: None, seed: None, groups: Some(vec![vec![1], vec![30]]) };
        assert!(assign_actors(&absent, &cache).unwrap_err().to_string().contains("`fold_actors[1]` names actor(s) 30"));
    }

    #[test]
    fn kfold_is_deterministic_and_seed_shuffles() {
        let rule = |seed| SplitRule::KFold { folds: 6, fold: 0, val_actors_per_fold: Some(2), seed, groups: None };
        let a = assign_actors(&rule(None), &actors(1..=24)).unwrap();
        assert_eq!((a.test.clone(), a.val.clone()), (vec![1, 2, 3, 4], vec![5, 6]));
        let b = assign_actors(&rule(Some(3)), &actors(1..=24)).unwrap();
        assert_eq!(b, assign_actors(&rule(Some(3)), &actors(1..=24)).unwrap());
        assert_ne!(a.test, b.test);
        let last = SplitRule::KFold { folds: 6, fold: 5, val_actors_per_fold: Some(2), seed: None, groups: None };
        let c = assign_actors(&last, &actors(1..=24)).unwrap();
        assert_eq!((c.test, c.val), (vec![21, 22, 23, 24], vec![1, 2]));
    }

    #[test]
    fn kfold_bad_numbers() {
        let rule = SplitRule::KFold { folds: 5, fold: 5, val_actors_per_fold: None, seed: None, groups: None };
        assert!(assign_actors(&rule, &actors(1..=24)).unwrap_err().message.contains("`fold` must be in 0..5"));
        let rule = SplitRule::KFold { folds: 5, fold: 0, val_actors_per_fold: None, seed: None, groups: None };
        assert!(assign_actors(&rule, &actors(1..=3)).unwrap_err().message.contains("at least 5 actors"));
        // Two folds with the next group as validation leave nobody to train on.
        let rule = SplitRule::KFold { folds: 2, fold: 0, val_actors_per_fold: None, seed: None, groups: None };
        assert_eq!(assign_actors(&rule, &actors(1..=4)).unwrap_err().message, "the train split has no actors");
    }
}
