//! RAVDESS video stages (see the crate description).

pub mod download;
pub mod ravdess;
pub mod scan;

pub mod extract;
pub mod synth;
pub mod tools;
