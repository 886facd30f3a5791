//! The pipeline engine: reads `pipeline.yaml`, validates it into a [`config::Plan`], computes
//! a content-hash cache key per stage instance ([`fingerprint`]), and runs what is stale
//! ([`runner`]), publishing outputs atomically into a content-addressed [`store`]. Where a
//! stale instance is computed (this process, or a Slurm job that exchanges inputs and results
//! through the [`remote`] cache) is an [`executor`]'s business.
//!
//! The engine knows nothing about video or models: built-in stage kinds, and what `predict` and
//! `metrics diff` do, come from the binary through a [`domain::Domain`]; `run:` stages are shell
//! commands.
//!
//! Key types: [`config::Plan`] (validated instances in topological order),
//! [`fingerprint::Fingerprint`] (everything a key depends on), [`dirty::DirtyReason`] (why an
//! instance is stale), [`store::Store`] (published artifacts, locks, state).

pub mod artifact_paths;
pub mod cli;
pub mod config;
pub mod cpu_budget;
pub mod dag;
pub mod dirty;
pub mod domain;
pub mod execute;
pub mod executor;
pub mod filehash;
pub mod fingerprint;
pub mod lock;
pub mod predict;
pub mod progress;
pub mod registry;
pub mod remote;
pub mod resume;
pub mod runlog;
pub mod runner;
pub mod runs;
pub mod store;

#[cfg(test)]
mod layering {
    use std::path::Path;

    /// Spelt in pieces, so that this file does not name them itself.
    fn domain_crates() -> Vec<String> {
        let mut names: Vec<String> = ["video", "learn", "report", "torch"].iter().map(|c| format!("stages_{c}")).collect();
        names.push(concat!("stage_", "formats").to_owned());
        names
    }

    /// The engine library knows stages only through `stage-api`: no file of it names a domain
    /// crate (the `pipeline` binary in cli/ registers the built-in domain).
    #[test]
    fn the_engine_library_names_no_domain_crate() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for name in domain_crates() {
                        if text.contains(&name) {
                            offenders.push(format!("{} names {name}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:#?}");
    }

    /// The engine package depends on `stage-api` and on no other crate of this repository, so
    /// it builds and tests without the stage crates (and so without what they link).
    #[test]
    fn the_engine_package_depends_on_stage_api_only() {
        let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
        let local = local_dependencies(&manifest);
        assert_eq!(local, ["stage-api"], "path dependencies of the engine package");
        assert_eq!(
            local_dependencies("[dependencies]\na = \"1\"\nb = { path = \"x\" }\n[dev-dependencies]\nc = { path = \"y\" }\n"),
            ["b", "c"]
        );
    }

    /// The names of the `path = ...` dependencies in every dependency table of `manifest`.
    fn local_dependencies(manifest: &str) -> Vec<String> {
        let mut in_dependencies = false;
        let mut names = Vec::new();
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                in_dependencies = line.trim_matches(['[', ']']).ends_with("dependencies");
            } else if in_dependencies && line.contains("path =") {
                names.push(line.split(['=', ' ', '.']).next().unwrap_or_default().to_owned());
            }
        }
        names
    }
}
