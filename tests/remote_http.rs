//! The remote-cache scenarios of `tests/remote.rs` against a read-only `http://` remote: a
//! directory remote that machines push to, served over HTTP on loopback by a tiny server in the
//! test (`tests/common/http_remote.rs`), which the pulling machines read.

mod common;
use common::http_remote::HttpRemote;
use common::remote::{self as scenario, Backend};

#[test]
fn second_machine_pulls_instead_of_computing() {
    let remote = HttpRemote::start();
    scenario::second_machine_pulls_instead_of_computing(&remote);
    // Reading needs GET only: a manifest is fetched without asking first whether it exists.
    let requests = remote.requests();
    assert!(requests.iter().all(|r| r.starts_with("GET /cache/")), "{requests:?}");
    assert!(requests.iter().any(|r| r.starts_with("GET /cache/manifests/")), "{requests:?}");
}

#[test]
fn pull_command_fetches_upstream_first() {
    scenario::pull_command_fetches_upstream_first(&HttpRemote::start());
}

#[test]
fn corrupted_blob_is_refused() {
    scenario::corrupted_blob_is_refused(&HttpRemote::start());
}

#[test]
fn truncated_blob_is_refused() {
    scenario::truncated_blob_is_refused(&HttpRemote::start());
}

#[test]
fn manifest_with_parent_paths_is_refused_and_nothing_escapes() {
    scenario::manifest_with_parent_paths_is_refused_and_nothing_escapes(&HttpRemote::start());
}

/// A stage the remote lacks is a miss (404), computed locally without complaint.
#[test]
fn missing_key_is_computed_without_complaint() {
    let remote = HttpRemote::start();
    let b = scenario::machine(&remote);
    let out = b.pipeline(&["run"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!((b.count("prep"), b.count("train")), (1, 1));
    assert!(!out.stderr.contains("remote"), "{}", out.stderr);
    let requests = remote.requests();
    assert_eq!(requests.len(), 2, "one GET per stage: {requests:?}");
}

#[test]
fn push_to_an_http_remote_is_refused_as_read_only() {
    let remote = HttpRemote::start();
    let b = scenario::machine(&remote);
    assert_eq!(b.pipeline(&["run"]).code, 0);
    let push = b.pipeline(&["push"]);
    assert_ne!(push.code, 0, "{}", push.stdout);
    assert!(push.stderr.contains(&format!("remote `{}` is read-only", remote.url())), "{}", push.stderr);
    let run = b.pipeline(&["run", "--push", "--force", "prep"]);
    assert!(run.stderr.contains("is read-only"), "{}", run.stderr);
    assert!(remote.list("").is_empty(), "nothing was written");
    assert!(remote.requests().iter().all(|r| r.starts_with("GET ")), "{:?}", remote.requests());
}
