//! RAVDESS video stages (see the crate description).
