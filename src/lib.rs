//! The pipeline engine.
