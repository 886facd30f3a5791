//! The store and the remote: pull before computing, push what was computed, `push`, `pull`, `gc`.

use super::*;

const NO_REMOTE: &str = "no remote: set `remote:` in pipeline.yaml or pass --remote URL";

/// Why `pipeline push` or `pull` stopped: a usage problem (exit status 2), or a transfer that
/// failed (exit status 1, as for a failed stage: the remote unreachable, a full disk).
#[derive(Debug)]
pub enum TransferError {
    Usage(String),
    Failed(String),
}

/// Errors of the selection (`status`) are usage errors.
impl From<EngineError> for TransferError {
    fn from(e: EngineError) -> Self {
        TransferError::Usage(e.to_string())
    }
}

impl Engine {
    /// Downloads `key` from the remote if it has it; `None` (after saying why) otherwise.
    pub(super) fn try_pull(&self, name: &str, key: &Key) -> Option<Manifest> {
        let remote = self.remote.as_ref()?;
        // One GET of the manifest: a miss is a NotFound, no HEAD needed first.
        match remote.pull(&self.store, key, name) {
            Err(RemoteError::Missing(_)) => None,
            Ok(manifest) => {
                self.reporter.line(&format!(
                    "{name}: pulled from the remote ({} files, {} bytes)",
                    manifest.files.len(),
                    manifest.total_size()
                ));
                Some(manifest)
            }
            // Nothing wrong with the remote's copy: it could not be stored here (a full disk).
            Err(e @ RemoteError::LocalWrite { .. }) => {
                self.reporter.line(&format!("{name}: could not store the remote copy ({e}); computing it here"));
                None
            }
            Err(e) => {
                self.reporter.line(&format!("{name}: refused the remote copy ({e}); computing it here"));
                None
            }
        }
    }

    pub(super) fn push_computed(&self, name: &str, key: &Key) {
        let Some(remote) = self.remote.as_ref().filter(|_| self.push) else { return };
        match remote.push(&self.store, key) {
            Ok(bytes) => self.reporter.line(&format!("{name}: pushed to the remote ({bytes} bytes uploaded)")),
            Err(e) => self.reporter.line(&format!("{name}: push failed: {e}")),
        }
    }

    /// `pipeline push`: uploads every selected fresh instance. Returns (pushed, bytes).
    pub fn push_all(&self, targets: &[String]) -> Result<(usize, u64), TransferError> {
        let remote = self.remote.as_ref().ok_or_else(|| TransferError::Usage(NO_REMOTE.to_owned()))?;
        let mut pushed = 0;
        let mut bytes = 0;
        for status in self.status(targets, &[])? {
            let Some(key) = status.key.filter(|_| status.state == Freshness::Fresh) else {
                self.reporter.line(&format!("{}: stale, nothing to push", status.stage));
                continue;
            };
            let n = remote.push(&self.store, &key).map_err(|e| TransferError::Failed(format!("{}: {e}", status.stage)))?;
            self.reporter.line(&format!("{}: pushed ({n} bytes uploaded)", status.stage));
            pushed += 1;
            bytes += n;
        }
        Ok((pushed, bytes))
    }

    /// `pipeline pull`: downloads every selected stale instance the remote has, upstream first
    /// (a downstream key is known only once its upstream outputs are here). Returns how many.
    pub fn pull_all(&self, targets: &[String]) -> Result<usize, TransferError> {
        let remote = self.remote.as_ref().ok_or_else(|| TransferError::Usage(NO_REMOTE.to_owned()))?;
        let mut pulled = 0;
        loop {
            let mut progress = false;
            for status in self.status(targets, &[])? {
                let Some(key) = status.key.filter(|_| status.state == Freshness::Stale) else { continue };
                if !remote.has(&key) {
                    continue;
                }
                let _lock = KeyLock::acquire(&self.store, &key)
                    .map_err(|e| TransferError::Failed(format!("{}: cannot lock: {e}", status.stage)))?;
                if self.store.lookup(&key).is_some() {
                    continue;
                }
                let manifest =
                    remote.pull(&self.store, &key, &status.stage).map_err(|e| TransferError::Failed(format!("{}: {e}", status.stage)))?;
                self.reporter.line(&format!("{}: pulled ({} files, {} bytes)", status.stage, manifest.files.len(), manifest.total_size()));
                pulled += 1;
                progress = true;
            }
            if !progress {
                return Ok(pulled);
            }
        }
    }

    /// Removes artifacts no current instance refers to (neither its current key nor its last
    /// successful one) and abandoned work directories. Returns (artifacts removed, bytes freed).
    pub fn gc(&self) -> Result<(usize, u64), EngineError> {
        let mut keep: BTreeSet<String> = BTreeSet::new();
        for status in self.status(&[], &[])? {
            if let Some(key) = status.key {
                keep.insert(key.as_str().to_owned());
            }
        }
        let names: BTreeSet<&str> = self.plan.instances.iter().map(|i| i.name.as_str()).collect();
        for state in self.store.all_states() {
            if names.contains(state.instance.as_str()) {
                keep.insert(state.key);
            }
        }
        let mut removed = 0;
        let store_error = |what| move |source| EngineError::Store { what, source };
        let mut freed = self.store.clean_tmp().map_err(store_error("cleaning abandoned work directories"))?;
        // Resumable states are for a rerun after an interruption; gc gives their space back.
        freed += self.resume.discard_idle(&self.store).map_err(store_error("discarding resumable states"))?.1;
        for key in self.store.published_keys().map_err(store_error("listing the store"))? {
            if keep.contains(key.as_str()) {
                continue;
            }
            // Never remove what another run is computing or publishing right now.
            if let Ok(Some(_lock)) = KeyLock::try_acquire(&self.store, &key) {
                freed += self.store.remove(&key).map_err(store_error("removing an artifact"))?;
                removed += 1;
            }
        }
        Ok((removed, freed))
    }
}
