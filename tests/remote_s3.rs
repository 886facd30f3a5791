//! The remote-cache scenarios of `tests/remote.rs` against a real S3-compatible server:
//! `s3s-fs` started on a free loopback port by each test (killed when the test ends), reached
//! through `remote: s3://shared/team/cache` with `AWS_ENDPOINT_URL` and static credentials.
//! Without `s3s-fs` installed these tests fail and say to run `scripts/setup.sh`.

mod common;
use common::remote::{self as scenario, S3Server};

#[test]
fn second_machine_pulls_instead_of_computing() {
    scenario::second_machine_pulls_instead_of_computing(&S3Server::start());
}

#[test]
fn pull_command_fetches_upstream_first() {
    scenario::pull_command_fetches_upstream_first(&S3Server::start());
}

#[test]
fn corrupted_blob_is_refused() {
    scenario::corrupted_blob_is_refused(&S3Server::start());
}

#[test]
fn truncated_blob_is_refused() {
    scenario::truncated_blob_is_refused(&S3Server::start());
}

#[test]
fn manifest_with_parent_paths_is_refused_and_nothing_escapes() {
    scenario::manifest_with_parent_paths_is_refused_and_nothing_escapes(&S3Server::start());
}

#[test]
fn concurrent_pushes_of_the_same_key() {
    scenario::concurrent_pushes_of_the_same_key(&S3Server::start());
}

/// The prefix of `s3://bucket/prefix` is honoured: everything lands under it in the bucket.
#[test]
fn objects_land_under_the_url_prefix() {
    let server = S3Server::start();
    let a = scenario::machine(&server);
    assert_eq!(a.pipeline(&["run", "--push"]).code, 0);
    let root = server.root();
    assert!(root.join("manifests").is_dir() && root.join("blobs").is_dir(), "{}", root.display());
    let bucket = root.parent().unwrap().parent().unwrap();
    let top: Vec<_> = std::fs::read_dir(bucket).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(top, vec![std::ffi::OsString::from("team")]);
}
