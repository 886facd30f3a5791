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
