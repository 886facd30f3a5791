//! The stage kinds a pipeline may use (`uses: KIND`), by name. The engine is given one by the
//! binary (see [`crate::domain::Domain`]); nothing in `src/` knows which kinds exist.

use std::collections::BTreeMap;
use std::sync::Arc;

use stage_api::Stage;

pub struct Registry {
    kinds: BTreeMap<&'static str, Arc<dyn Stage>>,
}

impl Registry {
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
