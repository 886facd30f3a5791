//! Sharing results between machines through a directory remote. The scenarios live in
//! `tests/common/remote.rs` and run against a real S3 server too (`tests/remote_s3.rs`).

mod common;
use common::remote::{self as scenario, DirRemote};

#[test]
fn second_machine_pulls_instead_of_computing() {
    scenario::second_machine_pulls_instead_of_computing(&DirRemote::new());
}

#[test]
fn pull_command_fetches_upstream_first() {
    scenario::pull_command_fetches_upstream_first(&DirRemote::new());
}

#[test]
fn corrupted_blob_is_refused() {
    scenario::corrupted_blob_is_refused(&DirRemote::new());
}

#[test]
fn truncated_blob_is_refused() {
    scenario::truncated_blob_is_refused(&DirRemote::new());
}

#[test]
fn manifest_with_parent_paths_is_refused_and_nothing_escapes() {
    scenario::manifest_with_parent_paths_is_refused_and_nothing_escapes(&DirRemote::new());
}

#[test]
fn concurrent_pushes_of_the_same_key() {
    scenario::concurrent_pushes_of_the_same_key(&DirRemote::new());
}
