//! The one place where the engine meets the domain: built-in stage kinds by name.
//! Adding a kind means adding one line here; nothing else in `src/` knows about video or models.

use std::collections::BTreeMap;
use std::sync::Arc;

use stage_api::Stage;

/// `pipeline metrics diff` compares metrics files the way the report crate reads them.
pub use stages_report::diff::{metrics_diff, render_diff_table};

/// `pipeline predict` runs the training stage crate's predictor (preprocessing included).
pub use stages_learn::predict::predict_videos;

pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
    /// Every built-in kind.
    pub fn builtin() -> Self {
        let mut stages: Vec<Arc<dyn Stage>> = vec![Arc::new(stages_report::ReportStage)];
        stages.extend(stages_video::stages().into_iter().map(Arc::from));
        stages.extend(stages_learn::stages().into_iter().map(Arc::from));
        Self::from_stages(stages)
    }

    pub fn from_stages(stages: Vec<Arc<dyn Stage>>) -> Self {
        Self { kinds: stages.into_iter().map(|s| (s.kind(), s)).collect() }
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Stage>> {
        self.kinds.get(kind).cloned()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }
}
