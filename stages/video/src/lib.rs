//! RAVDESS video stages (see the crate description).

pub mod download;
pub mod ravdess;
pub mod scan;

pub mod extract;
pub mod synth;
pub mod tools;

/// Every stage kind of this crate, for the engine's registry.
pub fn stages() -> Vec<Box<dyn stage_api::Stage>> {
    vec![Box::new(synth::SynthStage), Box::new(scan::ScanStage), Box::new(download::DownloadStage), Box::new(extract::ExtractStage::new())]
}
