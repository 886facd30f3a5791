//! `pipeline.yaml`: parsed into [`raw`] structs, then validated into a [`plan::Plan`], the only
//! thing the runner sees. Every error points at a file, line and column.

pub mod canonical;
pub mod error;
pub mod executor;
pub mod matrix;
pub mod plan;
pub mod raw;
pub mod spans;

pub use error::ConfigError;
pub use executor::{ExecutorConfig, ExecutorKind, Resources};
pub use plan::{Action, Instance, Plan};
