//! The remote-cache scenarios of `tests/remote.rs` against Azure Blob Storage: Azurite started
//! on a free loopback port by each test (killed when the test ends), reached through
//! `remote: az://shared/team/cache`. Without Azurite installed these tests fail and say to run
//! `scripts/setup.sh`.

mod common;
use common::azurite::{Azurite, Reach};
use common::remote as scenario;

#[test]
fn second_machine_pulls_instead_of_computing() {
    scenario::second_machine_pulls_instead_of_computing(&Azurite::start(Reach::Account));
}

/// The same through object_store's emulator switch instead of an account endpoint.
#[test]
fn second_machine_pulls_through_the_emulator_variables() {
    scenario::second_machine_pulls_instead_of_computing(&Azurite::start(Reach::Emulator));
}

#[test]
fn pull_command_fetches_upstream_first() {
    scenario::pull_command_fetches_upstream_first(&Azurite::start(Reach::Account));
}

#[test]
fn corrupted_blob_is_refused() {
    scenario::corrupted_blob_is_refused(&Azurite::start(Reach::Account));
}

#[test]
fn truncated_blob_is_refused() {
    scenario::truncated_blob_is_refused(&Azurite::start(Reach::Account));
}

#[test]
fn manifest_with_parent_paths_is_refused_and_nothing_escapes() {
    scenario::manifest_with_parent_paths_is_refused_and_nothing_escapes(&Azurite::start(Reach::Account));
}

#[test]
fn concurrent_pushes_of_the_same_key() {
    scenario::concurrent_pushes_of_the_same_key(&Azurite::start(Reach::Account));
}

/// The prefix of `az://container/prefix` is honoured: everything lands under it.
#[test]
fn objects_land_under_the_url_prefix() {
    let azurite = Azurite::start(Reach::Account);
    let a = scenario::machine(&azurite);
    assert_eq!(a.pipeline(&["run", "--push"]).code, 0);
    let all = azurite.list_container();
    assert!(all.iter().all(|p| p.starts_with("team/cache/")), "{all:?}");
    assert_eq!(all.iter().filter(|p| p.starts_with("team/cache/manifests/")).count(), 2, "{all:?}");
    assert!(all.iter().any(|p| p.starts_with("team/cache/blobs/")), "{all:?}");
}
