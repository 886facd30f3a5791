//! RAVDESS video stages (see the crate description).

pub mod ravdess;
pub mod scan;

pub mod synth;
pub mod tools;
pub mod extract;
