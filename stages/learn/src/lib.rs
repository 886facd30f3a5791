//! Learning stages (see the crate description).
