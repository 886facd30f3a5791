//! Freshness: an instance's fingerprint against what the store holds, and why it is stale.

use super::*;

impl Engine {
    /// What `run` would do, without doing it.
    pub fn status(&self, targets: &[String], force: &[String]) -> Result<Vec<InstanceStatus>, EngineError> {
        let selected = self.select(targets)?;
        let forced = self.forced(force)?;
        let mut statuses: Vec<Option<InstanceStatus>> = vec![None; self.plan.instances.len()];
        for &i in &selected {
            let instance = &self.plan.instances[i];
            let stale_needs: Vec<DirtyReason> = instance
                .needs
                .iter()
                .filter(|&&n| statuses[n].as_ref().is_none_or(|s| s.state == Freshness::Stale))
                .map(|&n| DirtyReason::UpstreamStale { stage: self.plan.instances[n].name.clone() })
                .collect();
            let status = if !stale_needs.is_empty() {
                let mut reasons = stale_needs;
                if forced.contains(&i) {
                    reasons.insert(0, DirtyReason::Forced);
                }
                InstanceStatus { stage: instance.name.clone(), state: Freshness::Stale, reasons, key: None, manifest: None }
            } else {
                let upstream = self.upstream_inputs(instance, |n| statuses[n].as_ref().and_then(|s| s.manifest.clone()));
                let fingerprint = compute(instance, upstream, &self.plan.base_dir, &self.memo)
                    .map_err(|source| EngineError::Key { instance: instance.name.clone(), source })?;
                let key = fingerprint.key();
                match (forced.contains(&i), self.store.lookup(&key)) {
                    (false, Some(manifest)) => InstanceStatus {
                        stage: instance.name.clone(),
                        state: Freshness::Fresh,
                        reasons: vec![],
                        key: Some(key),
                        manifest: Some(manifest),
                    },
                    (forced, _) => {
                        let reasons = if forced { vec![DirtyReason::Forced] } else { self.reasons(instance, &fingerprint) };
                        InstanceStatus { stage: instance.name.clone(), state: Freshness::Stale, reasons, key: Some(key), manifest: None }
                    }
                }
            };
            statuses[i] = Some(status);
        }
        let _ = self.memo.save();
        Ok(statuses.into_iter().flatten().collect())
    }

    pub(super) fn reasons(&self, instance: &Instance, fingerprint: &Fingerprint) -> Vec<DirtyReason> {
        let last = self.store.last_state(&instance.name);
        explain(last.as_ref().map(|s| &s.fingerprint), fingerprint)
    }

    pub(super) fn upstream_inputs(&self, instance: &Instance, manifest_of: impl Fn(usize) -> Option<Manifest>) -> Vec<UpstreamInput> {
        instance
            .needs
            .iter()
            .map(|&n| UpstreamInput {
                instance: self.plan.instances[n].name.clone(),
                content_hash: manifest_of(n).map(|m| m.content_hash).unwrap_or_default(),
            })
            .collect()
    }
}
