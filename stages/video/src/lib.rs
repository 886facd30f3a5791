//! RAVDESS video stages (see the crate description).

pub mod ravdess;

pub mod synth;
pub mod tools;
