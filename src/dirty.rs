//! Why a stage instance is stale, as data.
//!
//! Reasons come from comparing the fingerprint an instance had when it last succeeded with the
//! one it has now ([`explain`]); they are turned into text in one place ([`fmt::Display`]) and
//! into JSON for `pipeline status --json` and the run record.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::canonical::display_value;
use crate::fingerprint::{ActionId, Fingerprint};

/// At most this many paths are named in one reason.
const MAX_NAMED_PATHS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DirtyReason {
    /// No earlier success of this instance is recorded.
    NeverRun,
    /// `--force` named it.
    Forced,
    /// Same inputs as the last success, but its artifact is gone (garbage-collected or damaged).
    OutputMissing,
    CodeVersionChanged {
        kind: String,
        old: u32,
        new: u32,
    },
    KindChanged {
        old: String,
        new: String,
    },
    CommandChanged {
        old: String,
        new: String,
    },
    ParamChanged {
        name: String,
        old: Value,
        new: Value,
    },
    ParamAdded {
        name: String,
        value: Value,
    },
    ParamRemoved {
        name: String,
        old: Value,
    },
    UpstreamChanged {
        stage: String,
    },
    UpstreamAdded {
        stage: String,
    },
    UpstreamRemoved {
        stage: String,
    },
    /// An upstream instance is stale itself, so this one's key is not known yet.
    UpstreamStale {
        stage: String,
    },
    DepsChanged {
        changed: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
    },
    InputsChanged {
        changed: Vec<String>,
        added: Vec<String>,
        removed: Vec<String>,
    },
}

impl fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirtyReason::NeverRun => write!(f, "never run"),
            DirtyReason::Forced => write!(f, "forced"),
            DirtyReason::OutputMissing => write!(f, "output missing from the store"),
            DirtyReason::CodeVersionChanged { kind, old, new } => write!(f, "stage code version changed ({kind} v{old} -> v{new})"),
            DirtyReason::KindChanged { old, new } => write!(f, "stage kind changed {old} -> {new}"),
            DirtyReason::CommandChanged { .. } => write!(f, "command changed"),
            DirtyReason::ParamChanged { name, old, new } => {
                write!(f, "param {name} changed {} -> {}", display_value(old), display_value(new))
            }
            DirtyReason::ParamAdded { name, value } => write!(f, "param {name} added ({})", display_value(value)),
            DirtyReason::ParamRemoved { name, old } => write!(f, "param {name} removed (was {})", display_value(old)),
            DirtyReason::UpstreamChanged { stage } => write!(f, "upstream {stage} changed"),
            DirtyReason::UpstreamAdded { stage } => write!(f, "new upstream {stage}"),
            DirtyReason::UpstreamRemoved { stage } => write!(f, "upstream {stage} no longer needed"),
            DirtyReason::UpstreamStale { stage } => write!(f, "upstream {stage} is stale"),
            DirtyReason::DepsChanged { changed, added, removed } => write!(f, "deps changed: {}", paths(changed, added, removed)),
            DirtyReason::InputsChanged { changed, added, removed } => write!(f, "inputs changed: {}", paths(changed, added, removed)),
        }
    }
}

fn paths(changed: &[String], added: &[String], removed: &[String]) -> String {
    let mut parts = Vec::new();
    for (label, list) in [("", changed), ("added ", added), ("removed ", removed)] {
        if list.is_empty() {
            continue;
        }
        let shown: Vec<&str> = list.iter().take(MAX_NAMED_PATHS).map(String::as_str).collect();
        let more = list.len().saturating_sub(MAX_NAMED_PATHS);
        let tail = if more > 0 { format!(" and {more} more") } else { String::new() };
        parts.push(format!("{label}{}{tail}", shown.join(", ")));
    }
    parts.join("; ")
}

/// The reasons `new` differs from the last successful fingerprint `old`.
pub fn explain(old: Option<&Fingerprint>, new: &Fingerprint) -> Vec<DirtyReason> {
    let Some(old) = old else { return vec![DirtyReason::NeverRun] };
    let mut reasons = Vec::new();
    match (&old.action, &new.action) {
        (ActionId::Builtin { kind: ok, version: ov }, ActionId::Builtin { kind: nk, version: nv }) if ok == nk => {
            if ov != nv {
                reasons.push(DirtyReason::CodeVersionChanged { kind: nk.clone(), old: *ov, new: *nv });
            }
        }
        (ActionId::Shell { command: oc }, ActionId::Shell { command: nc }) => {
            if oc != nc {
                reasons.push(DirtyReason::CommandChanged { old: oc.clone(), new: nc.clone() });
            }
        }
        (o, n) => reasons.push(DirtyReason::KindChanged { old: action_name(o), new: action_name(n) }),
    }
    for (name, new_value) in &new.params {
        match old.params.get(name) {
            None => reasons.push(DirtyReason::ParamAdded { name: name.clone(), value: new_value.clone() }),
            Some(old_value) if old_value != new_value => {
                reasons.push(DirtyReason::ParamChanged { name: name.clone(), old: old_value.clone(), new: new_value.clone() })
            }
            _ => {}
        }
    }
    for (name, old_value) in &old.params {
        if !new.params.contains_key(name) {
            reasons.push(DirtyReason::ParamRemoved { name: name.clone(), old: old_value.clone() });
        }
    }
    let old_up: BTreeMap<&str, &str> = old.upstream.iter().map(|u| (u.instance.as_str(), u.content_hash.as_str())).collect();
    let new_up: BTreeMap<&str, &str> = new.upstream.iter().map(|u| (u.instance.as_str(), u.content_hash.as_str())).collect();
    for (stage, hash) in &new_up {
        match old_up.get(stage) {
            None => reasons.push(DirtyReason::UpstreamAdded { stage: stage.to_string() }),
            Some(old_hash) if old_hash != hash => reasons.push(DirtyReason::UpstreamChanged { stage: stage.to_string() }),
            _ => {}
        }
    }
    for stage in old_up.keys().filter(|s| !new_up.contains_key(*s)) {
        reasons.push(DirtyReason::UpstreamRemoved { stage: stage.to_string() });
    }
    if let Some((changed, added, removed)) = diff_files(&old.deps, &new.deps) {
        reasons.push(DirtyReason::DepsChanged { changed, added, removed });
    }
    if let Some((changed, added, removed)) = diff_files(&old.raw_inputs, &new.raw_inputs) {
        reasons.push(DirtyReason::InputsChanged { changed, added, removed });
    }
    if reasons.is_empty() {
        // Same fingerprint as the last success: only the artifact can be missing.
        reasons.push(DirtyReason::OutputMissing);
    }
    reasons
}

fn action_name(action: &ActionId) -> String {
    match action {
        ActionId::Builtin { kind, .. } => format!("uses {kind}"),
        ActionId::Shell { .. } => "run".to_owned(),
    }
}

type FileDiff = (Vec<String>, Vec<String>, Vec<String>);

fn diff_files(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Option<FileDiff> {
    let changed: Vec<String> = new.iter().filter(|(p, h)| old.get(*p).is_some_and(|o| o != *h)).map(|(p, _)| p.clone()).collect();
    let added: Vec<String> = new.keys().filter(|p| !old.contains_key(*p)).cloned().collect();
    let removed: Vec<String> = old.keys().filter(|p| !new.contains_key(*p)).cloned().collect();
    (!(changed.is_empty() && added.is_empty() && removed.is_empty())).then_some((changed, added, removed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fingerprint::UpstreamInput;
    use serde_json::json;

    fn base() -> Fingerprint {
        Fingerprint {
            action: ActionId::Builtin { kind: "train".into(), version: 1 },
            params: json!({"arch": "r3d18", "frames": 10}).as_object().unwrap().clone(),
            upstream: vec![UpstreamInput { instance: "extract".into(), content_hash: "aa".into() }],
            deps: BTreeMap::from([("scripts/x.py".to_string(), "01".to_string())]),
            raw_inputs: BTreeMap::new(),
        }
    }

    /// One snapshot per variant: the text users read.
    #[test]
    fn each_reason_reads_as_documented() {
        let cases: Vec<(DirtyReason, &str)> = vec![
            (DirtyReason::NeverRun, "never run"),
            (DirtyReason::Forced, "forced"),
            (DirtyReason::OutputMissing, "output missing from the store"),
            (DirtyReason::CodeVersionChanged { kind: "extract".into(), old: 1, new: 2 }, "stage code version changed (extract v1 -> v2)"),
            (DirtyReason::KindChanged { old: "run".into(), new: "uses scan".into() }, "stage kind changed run -> uses scan"),
            (DirtyReason::CommandChanged { old: "a".into(), new: "b".into() }, "command changed"),
            (DirtyReason::ParamChanged { name: "frames".into(), old: json!(10), new: json!(16) }, "param frames changed 10 -> 16"),
            (DirtyReason::ParamAdded { name: "seed".into(), value: json!(1) }, "param seed added (1)"),
            (DirtyReason::ParamRemoved { name: "seed".into(), old: json!("x") }, "param seed removed (was x)"),
            (DirtyReason::UpstreamChanged { stage: "extract".into() }, "upstream extract changed"),
            (DirtyReason::UpstreamAdded { stage: "split".into() }, "new upstream split"),
            (DirtyReason::UpstreamRemoved { stage: "split".into() }, "upstream split no longer needed"),
            (DirtyReason::UpstreamStale { stage: "scan".into() }, "upstream scan is stale"),
            (
                DirtyReason::DepsChanged { changed: vec!["scripts/x.py".into()], added: vec![], removed: vec![] },
                "deps changed: scripts/x.py",
            ),
            (
                DirtyReason::InputsChanged {
                    changed: vec!["a".into(), "b".into(), "c".into(), "d".into()],
                    added: vec!["e".into()],
                    removed: vec![],
                },
                "inputs changed: a, b, c and 1 more; added e",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
    }

    #[test]
    fn explains_param_and_upstream_changes() {
        let old = base();
        let mut new = base();
        new.params.insert("frames".into(), json!(16));
        new.upstream[0].content_hash = "bb".into();
        assert_eq!(
            explain(Some(&old), &new),
            vec![
                DirtyReason::ParamChanged { name: "frames".into(), old: json!(10), new: json!(16) },
                DirtyReason::UpstreamChanged { stage: "extract".into() },
            ]
        );
    }

    #[test]
    fn identical_fingerprint_means_output_missing() {
        assert_eq!(explain(Some(&base()), &base()), vec![DirtyReason::OutputMissing]);
        assert_eq!(explain(None, &base()), vec![DirtyReason::NeverRun]);
    }

    #[test]
    fn reasons_serialise_with_a_tag() {
        let json = serde_json::to_value(DirtyReason::UpstreamChanged { stage: "x".into() }).unwrap();
        assert_eq!(json, json!({"reason": "upstream_changed", "stage": "x"}));
    }
}
