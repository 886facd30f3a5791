//! Finding upstream outputs: by need name first (`extract`, `split`), else by the file that
//! marks that kind of output, so a pipeline may call its stages `extract_small` or
//! `split_kfold` without the downstream stage failing.

use stage_api::{StageContext, StageError, StageInput};

/// The single input called `name`, or else the single input whose folder holds `marker`.
pub fn find_input<'a>(
    ctx: &'a StageContext<'_>,
    name: &str,
    marker: &str,
) -> Result<&'a StageInput, StageError> {
    if !ctx.inputs_of(name).is_empty() {
        return ctx.single_input(name);
    }
    let marked: Vec<&StageInput> = ctx
        .inputs
        .iter()
        .filter(|i| i.dir.join(marker).is_file())
        .collect();
    match marked.as_slice() {
        [one] => Ok(one),
        [] => ctx.single_input(name),
        many => Err(StageError::msg(format!(
            "several inputs look like a `{name}` output ({}); name one of them `{name}` in `needs:`",
            many.iter().map(|i| i.instance.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use stage_api::{NoProgress, Params, SameStore};

    use super::*;

    #[test]
    fn by_name_then_by_marker() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join("index.parquet"), b"").unwrap();
        let input = |need: &str, dir: &std::path::Path| StageInput {
            need: need.into(),
            instance: need.into(),
            params: Params::new(),
            dir: dir.to_path_buf(),
        };
        let inputs = [input("frames10", a.path()), input("other", b.path())];
        let params = Params::new();
        let ctx = StageContext {
            params: &params,
            inputs: &inputs,
            out_dir: b.path(),
            base_dir: b.path(),
            progress: &NoProgress,
            threads: 1,
            artifacts: &SameStore,
        };
        assert_eq!(
            find_input(&ctx, "extract", "index.parquet").unwrap().need,
            "frames10"
        );
        assert_eq!(
            find_input(&ctx, "other", "index.parquet").unwrap().need,
            "other"
        );
        let err = find_input(&ctx, "split", "assignment.parquet").unwrap_err();
        assert!(err.message.contains("`split`"), "{}", err.message);
    }
}
