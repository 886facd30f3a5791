//! The validated plan: stage instances (matrix expanded), resolved parameters and the
//! dependency graph in topological order.
//!
//! Validation happens here, before anything runs: unknown keys and wrong types (serde), both or
//! neither of `uses`/`run`, unknown kinds, `needs` naming no stage, cycles, bad parameters, empty
//! matrices, `deps` patterns that match nothing. Each error carries the node's line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use stage_api::{Params, Stage};

use super::canonical::{canonical, display_value};
use super::error::{did_you_mean, ConfigError};
use super::executor::{self, ExecutorConfig};
use super::matrix;
use super::raw::{RawConfig, RawStage};
use super::spans::{Position, SpanIndex};
use crate::registry::Registry;

/// What an instance does.
#[derive(Clone)]
pub enum Action {
    Builtin(Arc<dyn Stage>),
    Shell { command: String },
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Builtin(stage) => write!(f, "uses {}@{}", stage.kind(), stage.version()),
            Action::Shell { command } => write!(f, "run {command:?}"),
        }
    }
}

impl Action {
    /// Whether it can run as shards and a merge ([`Stage::shardable`]).
    pub fn shardable(&self) -> bool {
        matches!(self, Action::Builtin(stage) if stage.shardable())
    }
}

/// One runnable unit: a stage, or one combination of a stage's matrix.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `train` or `train[arch=r3d18]`.
    pub name: String,
    /// The stage as named under `stages:`.
    pub stage: String,
    pub action: Action,
    /// `with:` plus this instance's matrix values, defaults filled in, canonical.
    pub params: Params,
    /// This instance's matrix values, in the order the matrix lists its keys.
    pub matrix: Vec<(String, Value)>,
    /// Upstream instances (indices into [`Plan::instances`], always earlier ones).
    pub needs: Vec<usize>,
    /// `deps:` glob patterns, relative to the base directory.
    pub deps: Vec<String>,
    /// Raw input paths a built-in stage declared (datasets), relative to the base directory
    /// or absolute.
    pub raw_inputs: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct Plan {
    pub config_file: PathBuf,
    /// The directory of the config file: shell stages run here, relative paths start here.
    pub base_dir: PathBuf,
    pub store_dir: PathBuf,
    /// The remote cache named in the file, if any (`--remote` overrides it).
    pub remote: Option<String>,
    /// Where instances run (`executor:`; local by default, `--executor` overrides the kind).
    pub executor: ExecutorConfig,
    /// Every instance, in a topological order (needs before their dependents).
    pub instances: Vec<Instance>,
}

impl Plan {
    /// Reads and validates `config_file`.
    pub fn load(config_file: &Path, registry: &Registry) -> Result<Plan, ConfigError> {
        let text = std::fs::read_to_string(config_file).map_err(|e| {
            ConfigError::new(config_file, None, format!("cannot read the pipeline file: {e}"))
                .with_hint("pass another file with `--config FILE`")
        })?;
        Self::from_str(&text, config_file, registry)
    }

    pub fn from_str(text: &str, config_file: &Path, registry: &Registry) -> Result<Plan, ConfigError> {
        let raw: RawConfig = serde_norway::from_str(text).map_err(|e| {
            let position = e.location().map(|l| Position { line: l.line(), column: l.column() });
            ConfigError::new(config_file, position, e.to_string())
        })?;
        let spans = SpanIndex::build(text);
        let base_dir =
            config_file.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p }).unwrap_or(Path::new(".")).to_path_buf();
        let base_dir = std::fs::canonicalize(&base_dir).unwrap_or(base_dir);
        Validator { file: config_file, spans: &spans, registry, base_dir: &base_dir }.plan(raw)
    }

    /// Instances whose stage or instance name is `name`.
    pub fn select(&self, name: &str) -> Vec<usize> {
        self.instances.iter().enumerate().filter(|(_, i)| i.name == name || i.stage == name).map(|(n, _)| n).collect()
    }

    /// `targets` and everything they need, in plan order. No targets means everything.
    pub fn closure(&self, targets: &[usize]) -> Vec<usize> {
        if targets.is_empty() {
            return (0..self.instances.len()).collect();
        }
        let mut wanted = BTreeSet::new();
        let mut stack = targets.to_vec();
        while let Some(i) = stack.pop() {
            if wanted.insert(i) {
                stack.extend(&self.instances[i].needs);
            }
        }
        wanted.into_iter().collect()
    }

    pub fn stage_names(&self) -> BTreeSet<&str> {
        self.instances.iter().map(|i| i.stage.as_str()).collect()
    }
}

struct Validator<'a> {
    file: &'a Path,
    spans: &'a SpanIndex,
    registry: &'a Registry,
    base_dir: &'a Path,
}

impl Validator<'_> {
    fn error(&self, path: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.file, self.spans.find(path), message)
    }

    fn plan(&self, raw: RawConfig) -> Result<Plan, ConfigError> {
        if raw.stages.is_empty() {
            return Err(self.error(&["stages"], "no stages defined").with_hint("add at least one stage under `stages:`"));
        }
        for (name, stage) in &raw.stages {
            self.check_stage(name, stage, &raw)?;
        }
        let order = self.stage_order(&raw)?;
        let mut instances: Vec<Instance> = Vec::new();
        let mut by_stage: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for name in order {
            let stage = &raw.stages[name];
            for instance in self.expand(name, stage, &instances, &by_stage)? {
                by_stage.entry(name).or_default().push(instances.len());
                instances.push(instance);
            }
        }
        let store = raw.store.as_deref().unwrap_or(".pipeline");
        let executor = self.executor(&raw)?;
        Ok(Plan {
            config_file: self.file.to_path_buf(),
            base_dir: self.base_dir.to_path_buf(),
            store_dir: self.base_dir.join(store),
            remote: raw.remote.clone(),
            executor,
            instances,
        })
    }

    fn executor(&self, raw: &RawConfig) -> Result<ExecutorConfig, ConfigError> {
        let Some(section) = &raw.executor else { return Ok(ExecutorConfig::default()) };
        let stages: Vec<&str> = raw.stages.keys().map(String::as_str).collect();
        let mut config = executor::validate(section, &stages, self.base_dir).map_err(|e| {
            let path: Vec<&str> = e.path.iter().map(String::as_str).collect();
            let err = self.error(&path, e.message);
            match e.hint {
                Some(hint) => err.with_hint(hint),
                None => err,
            }
        })?;
        config.position = self.spans.find(&["executor", "kind"]);
        for (stage, resources) in &config.per_stage {
            if resources.shards.is_some_and(|n| n > 1) && !self.shardable(&raw.stages[stage]) {
                let shardable: Vec<&str> = self.registry.kinds().filter(|k| self.registry.get(k).is_some_and(|s| s.shardable())).collect();
                return Err(self
                    .error(&["executor", "resources", stage, "shards"], format!("stage `{stage}` cannot be split into shards"))
                    .with_hint(format!("only data-parallel built-in stages can: {}", shardable.join(", "))));
            }
        }
        Ok(config)
    }

    fn shardable(&self, stage: &RawStage) -> bool {
        stage.uses.as_deref().and_then(|kind| self.registry.get(kind)).is_some_and(|s| s.shardable())
    }

    fn check_stage(&self, name: &str, stage: &RawStage, raw: &RawConfig) -> Result<(), ConfigError> {
        let at = ["stages", name];
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(self.error(&at, format!("stage name `{name}` may only use letters, digits, `_` and `-`")));
        }
        match (&stage.uses, &stage.run) {
            (Some(_), Some(_)) => {
                return Err(self
                    .error(&at, format!("stage `{name}` has both `uses` and `run`"))
                    .with_hint("a stage is either a built-in kind (`uses:`) or a shell command (`run:`), not both"))
            }
            (None, None) => {
                return Err(self
                    .error(&at, format!("stage `{name}` has neither `uses` nor `run`"))
                    .with_hint("add `uses: KIND` for a built-in stage or `run: \"command\"` for a shell stage"))
            }
            (Some(kind), None) if self.registry.get(kind).is_none() => {
                let known: Vec<_> = self.registry.kinds().collect();
                let hint = did_you_mean(kind, known.iter().copied()).unwrap_or_else(|| format!("built-in kinds: {}", known.join(", ")));
                return Err(self.error(&["stages", name, "uses"], format!("unknown stage kind `{kind}`")).with_hint(hint));
            }
            _ => {}
        }
        for (i, need) in stage.needs.iter().enumerate() {
            let index = i.to_string();
            if !raw.stages.contains_key(need) {
                let err = self.error(&["stages", name, "needs", &index], format!("`{name}` needs `{need}`, but there is no such stage"));
                let hint = did_you_mean(need, raw.stages.keys().map(String::as_str))
                    .unwrap_or_else(|| format!("stages: {}", raw.stages.keys().cloned().collect::<Vec<_>>().join(", ")));
                return Err(err.with_hint(hint));
            }
            if need == name {
                return Err(self.error(&["stages", name, "needs", &index], format!("stage `{name}` needs itself")));
            }
        }
        for (key, values) in &stage.matrix {
            if key == matrix::INCLUDE {
                continue;
            }
            if values.is_empty() {
                return Err(self.error(&["stages", name, "matrix", key], format!("matrix `{key}` of `{name}` lists no values")));
            }
            if stage.with.contains_key(key) {
                return Err(self
                    .error(&["stages", name, "matrix", key], format!("`{key}` is set both in `with:` and in `matrix:` of `{name}`"))
                    .with_hint("keep it in one place"));
            }
        }
        for (i, pattern) in stage.deps.iter().enumerate() {
            let at = ["stages", name, "deps", &i.to_string()];
            let full = self.base_dir.join(pattern);
            let matches =
                glob::glob(&full.to_string_lossy()).map_err(|e| self.error(&at, format!("bad `deps` pattern `{pattern}`: {e}")))?;
            if matches.filter_map(Result::ok).next().is_none() {
                return Err(self
                    .error(&at, format!("`deps` pattern `{pattern}` of `{name}` matches no file"))
                    .with_hint(format!("paths are relative to {}", self.base_dir.display())));
            }
        }
        Ok(())
    }

    /// Stage names in dependency order; a cycle is an error that spells the cycle out.
    fn stage_order<'r>(&self, raw: &'r RawConfig) -> Result<Vec<&'r str>, ConfigError> {
        let mut order = Vec::new();
        // 0 = unvisited, 1 = on the current path, 2 = done.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        for name in raw.stages.keys() {
            let mut path = Vec::new();
            self.visit(name, raw, &mut state, &mut path, &mut order)?;
        }
        Ok(order)
    }

    fn visit<'r>(
        &self,
        name: &'r str,
        raw: &'r RawConfig,
        state: &mut BTreeMap<&'r str, u8>,
        path: &mut Vec<&'r str>,
        order: &mut Vec<&'r str>,
    ) -> Result<(), ConfigError> {
        match state.get(name) {
            Some(2) => return Ok(()),
            Some(1) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(name);
                return Err(self
                    .error(&["stages", name, "needs"], format!("the stages form a cycle: {}", cycle.join(" -> ")))
                    .with_hint("remove one of these `needs` entries"));
            }
            _ => {}
        }
        state.insert(name, 1);
        path.push(name);
        let (key, stage) = raw.stages.get_key_value(name).expect("checked in check_stage");
        for need in &stage.needs {
            let (need_key, _) = raw.stages.get_key_value(need.as_str()).expect("checked in check_stage");
            self.visit(need_key, raw, state, path, order)?;
        }
        path.pop();
        state.insert(name, 2);
        order.push(key);
        Ok(())
    }

    fn expand(
        &self,
        name: &str,
        stage: &RawStage,
        done: &[Instance],
        by_stage: &BTreeMap<&str, Vec<usize>>,
    ) -> Result<Vec<Instance>, ConfigError> {
        let expanded = matrix::expand(&stage.matrix).map_err(|e| {
            let index = e.index.to_string();
            let mut at = vec!["stages", name, "matrix", matrix::INCLUDE, &index];
            at.extend(e.key.as_deref());
            let err = self.error(&at, format!("`{name}`: {}", e.message));
            match e.hint {
                Some(hint) => err.with_hint(hint),
                None => err,
            }
        })?;
        let mut instances = Vec::new();
        for (combination, included) in expanded {
            let mut params = stage.with.clone();
            for (key, value) in &combination {
                params.insert(key.clone(), value.clone());
            }
            // `include:` parameters win over `with:` for the combinations they select.
            let included_keys: Vec<String> = included.keys().cloned().collect();
            params.extend(included);
            let instance_name = instance_name(name, &combination);
            let (action, params, raw_inputs) = self.resolve(name, &instance_name, stage, params, &combination, &included_keys)?;
            let needs = stage.needs.iter().flat_map(|need| matching_instances(&by_stage[need.as_str()], done, &combination)).collect();
            instances.push(Instance {
                name: instance_name,
                stage: name.to_owned(),
                action,
                params,
                matrix: combination,
                needs,
                deps: stage.deps.clone(),
                raw_inputs,
            });
        }
        Ok(instances)
    }

    fn resolve(
        &self,
        name: &str,
        instance_name: &str,
        stage: &RawStage,
        params: Params,
        combination: &[(String, Value)],
        included: &[String],
    ) -> Result<(Action, Params, Vec<PathBuf>), ConfigError> {
        let canonical_params = |p: Params| match canonical(Value::Object(p)) {
            Value::Object(map) => map,
            _ => unreachable!("canonical keeps objects"),
        };
        match (&stage.uses, &stage.run) {
            (Some(kind), _) => {
                let builtin = self.registry.get(kind).expect("checked in check_stage");
                let resolved = builtin.resolve_params(&params).map_err(|e| {
                    let at: Vec<&str> = match e.param.as_deref() {
                        Some(p) if combination.iter().any(|(k, _)| k == p) => vec!["stages", name, "matrix", p],
                        Some(p) if included.iter().any(|k| k == p) => vec!["stages", name, "matrix", matrix::INCLUDE],
                        Some(p) if stage.with.contains_key(p) => vec!["stages", name, "with", p],
                        _ => vec!["stages", name, "with"],
                    };
                    self.error(&at, format!("parameter of `{instance_name}` ({kind}): {}", e.message))
                })?;
                let raw_inputs = builtin
                    .raw_inputs(&resolved, self.base_dir, &stage.needs)
                    .map_err(|e| self.error(&["stages", name, "with"], format!("`{instance_name}`: {}", e.message)))?;
                Ok((Action::Builtin(builtin), canonical_params(resolved), raw_inputs))
            }
            (None, Some(command)) => Ok((Action::Shell { command: command.clone() }, canonical_params(params), Vec::new())),
            (None, None) => unreachable!("checked in check_stage"),
        }
    }
}

fn instance_name(stage: &str, combination: &[(String, Value)]) -> String {
    if combination.is_empty() {
        return stage.to_owned();
    }
    let values: Vec<String> = combination.iter().map(|(k, v)| format!("{k}={}", display_value(v))).collect();
    format!("{stage}[{}]", values.join(","))
}

/// The upstream instances a downstream instance depends on: all of them, except that where
/// both sides have a matrix key in common, only those whose values agree (so
/// `evaluate[arch=x]` needs `train[arch=x]`, not every `train`).
fn matching_instances(candidates: &[usize], done: &[Instance], combination: &[(String, Value)]) -> Vec<usize> {
    candidates
        .iter()
        .copied()
        .filter(|&c| {
            done[c].matrix.iter().all(|(key, value)| combination.iter().find(|(k, _)| k == key).is_none_or(|(_, mine)| mine == value))
        })
        .collect()
}
