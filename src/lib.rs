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
    /// The engine library knows stages only through `stage-api`: no file of it (the binary in
    /// `src/bin` aside, which registers the built-in domain) names a domain crate.
    #[test]
    fn the_engine_library_names_no_domain_crate() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut dirs = vec![src.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if path != src.join("bin") {
                        dirs.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    // Spelt in pieces, so that this file does not name them itself.
                    let crates = ["video", "learn", "report", "torch"].map(|c| format!("stages_{c}"));
                    for name in crates.iter().map(String::as_str).chain([concat!("stage_", "formats")]) {
                        if text.contains(name) {
                            offenders.push(format!("{} names {name}", path.display()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:#?}");
    }
}
