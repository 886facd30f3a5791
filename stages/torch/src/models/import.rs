//! Loading torchvision-published weights into the study's models.
//!
//! torchvision publishes `resnet18` (ImageNet) and `video.r3d_18` (Kinetics-400) as `.pth`
//! files: `torch.save(state_dict)` output, a zip archive holding a pickled `OrderedDict` of
//! tensors, which tch cannot read. We read those with `candle_core::pickle` and also accept
//! `.safetensors` files (detected by content, not by extension).
//!
//! Names map onto the model as follows:
//! - a name the model has is used as is (`r3d18` and `early_fusion_resnet18` share
//!   torchvision's names; a checkpoint written from one of our own models also matches);
//! - for the models with a per-frame `backbone` (late fusion, LSTM) a torchvision `resnet18`
//!   file (no `backbone.` names) maps `X` onto `backbone.X`; its `fc.*` maps onto the late
//!   fusion head (averaging features then applying `fc` is averaging per-frame logits) and is
//!   unused for the LSTM model, whose head reads LSTM states, not image features.
//!
//! Loading is strict: every model tensor must come from the file with its exact shape, except
//! the layers a study model changes on purpose, which keep their fresh initialisation and are
//! listed in [`LoadReport::kept_fresh`]: the head (`fc`, `classifier.3`) when its class count
//! differs or the file has none, the first convolution of the early-fusion models (3T input
//! channels instead of 3), and the LSTM. Anything else missing or of another shape is an error
//! naming the tensors. BatchNorm's `num_batches_tracked` counters have no counterpart in tch
//! (momentum is fixed) and are skipped silently.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use stage_api::StageError;
use tch::{Kind, Tensor};

use super::{Arch, ModelSpec};

/// What [`load_pretrained`] did, tensor by tensor (model names, sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model tensors copied from the file.
    pub loaded: Vec<String>,
    /// Model tensors left at their fresh initialisation (new or reshaped layers).
    pub kept_fresh: Vec<String>,
    /// File tensors (file names) the model has no place for.
    pub unused_in_file: Vec<String>,
}

/// How many names an error message lists before it says "and N more".
const LISTED: usize = 8;

/// Loads the checkpoint at `path` into `vs`, which holds a model built from `spec`.
pub fn load_pretrained(vs: &mut tch::nn::VarStore, spec: &ModelSpec, path: &Path) -> Result<LoadReport, StageError> {
    let file = read_checkpoint(path)?;
    let model = vs.variables();
    let plan = plan(path, spec.arch, &model, &file)?;
    tch::no_grad(|| {
        for (model_name, file_name) in &plan.copies {
            let target = &model[model_name];
            let source = file[file_name].to_kind(target.kind()).to_device(target.device());
            target.shallow_clone().copy_(&source);
        }
    });
    let mut loaded: Vec<String> = plan.copies.into_keys().collect();
    loaded.sort();
    Ok(LoadReport { loaded, kept_fresh: plan.kept_fresh, unused_in_file: plan.unused_in_file })
}

/// Which file tensor goes into which model tensor.
#[derive(Debug)]
struct Plan {
    /// model name → file name.
    copies: BTreeMap<String, String>,
    kept_fresh: Vec<String>,
    unused_in_file: Vec<String>,
}

/// Matches file tensors to model tensors; `Err` names the file `path` and describes everything
/// that does not fit.
fn plan(path: &Path, arch: Arch, model: &HashMap<String, Tensor>, file: &BTreeMap<String, Tensor>) -> Result<Plan, StageError> {
    let misfit = |problem: String| StageError::msg(format!("pretrained weights {} do not fit {arch}: {problem}", path.display()));
    let has_backbone = model.keys().any(|k| k.starts_with("backbone."));
    let torchvision_image_layout = has_backbone && !file.keys().any(|k| k.starts_with("backbone."));
    // model name → file name
    let mut offered: BTreeMap<String, String> = BTreeMap::new();
    let mut unused_in_file = Vec::new();
    for name in file.keys() {
        if name.ends_with("num_batches_tracked") {
            continue;
        }
        let target = if torchvision_image_layout {
            if name.starts_with("fc.") {
                (arch != Arch::Resnet18Lstm).then(|| name.clone())
            } else {
                Some(format!("backbone.{name}"))
            }
        } else {
            Some(name.clone())
        };
        let target = target.filter(|t| model.contains_key(t.as_str()));
        match target {
            Some(t) => {
                offered.insert(t, name.clone());
            }
            None => unused_in_file.push(name.clone()),
        }
    }

    let mut copies = BTreeMap::new();
    let mut kept_fresh = Vec::new();
    let mut wrong_shape = Vec::new();
    let mut missing = Vec::new();
    let mut model_names: Vec<&String> = model.keys().collect();
    model_names.sort();
    for name in model_names {
        let want = model[name].size();
        match offered.get(name) {
            Some(file_name) if file[file_name].size() == want => {
                copies.insert(name.clone(), file_name.clone());
            }
            Some(_) if may_change_shape(arch, name) => kept_fresh.push(name.clone()),
            Some(file_name) => {
                wrong_shape.push(format!("{name}: file `{file_name}` is {:?}, model needs {want:?}", file[file_name].size()))
            }
            None if may_be_new(arch, name) => kept_fresh.push(name.clone()),
            None => missing.push(name.clone()),
        }
    }

    if copies.is_empty() {
        let file_example: Vec<&String> = file.keys().take(3).collect();
        let model_example = ["conv1.weight", "stem.0.weight", "backbone.conv1.weight", "blocks.0.0.weight"]
            .into_iter()
            .filter(|n| model.contains_key(*n))
            .collect::<Vec<_>>();
        return Err(misfit(format!(
            "none of the file's {} tensors matches a model tensor (file has e.g. {file_example:?}, model has e.g. \
             {model_example:?}); is it a checkpoint of another architecture?",
            file.len()
        )));
    }
    let mut problems = Vec::new();
    if !wrong_shape.is_empty() {
        problems.push(format!("{} tensors have other shapes: {}", wrong_shape.len(), listing(&wrong_shape)));
    }
    if !missing.is_empty() {
        problems.push(format!("{} model tensors are not in the file: {}", missing.len(), listing(&missing)));
    }
    if !problems.is_empty() {
        let mut text = problems.join("; ");
        if missing.len() + wrong_shape.len() > copies.len() {
            let unused: Vec<&String> = unused_in_file.iter().take(3).collect();
            text.push_str(&format!(
                " (only {} of {} model tensors match; the file also holds {unused:?}: is it a checkpoint of \
                 another architecture?)",
                copies.len(),
                model.len()
            ));
        }
        return Err(misfit(text));
    }
    unused_in_file.sort();
    Ok(Plan { copies, kept_fresh, unused_in_file })
}

/// The first [`LISTED`] entries, comma-separated, and how many more there are.
fn listing(items: &[String]) -> String {
    let mut text = items.iter().take(LISTED).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > LISTED {
        text.push_str(&format!(", and {} more", items.len() - LISTED));
    }
    text
}

/// The head of each architecture: a new task, so a new class count.
fn is_head(arch: Arch, name: &str) -> bool {
    match arch {
        Arch::EarlyFusionCnn => name.starts_with("classifier.3."),
        _ => name.starts_with("fc."),
    }
}

/// Layers whose shape a study model changes relative to the published network.
fn may_change_shape(arch: Arch, name: &str) -> bool {
    is_head(arch, name)
        || (arch == Arch::EarlyFusionResnet18 && name == "conv1.weight")
        || (arch == Arch::EarlyFusionCnn && name == "blocks.0.0.weight")
}

/// Layers a published checkpoint may lack because the study model adds them.
fn may_be_new(arch: Arch, name: &str) -> bool {
    is_head(arch, name) || (arch == Arch::Resnet18Lstm && name.starts_with("lstm."))
}

/// Reads every tensor of a `.pth` (zip-pickled state dict) or `.safetensors` file.
fn read_checkpoint(path: &Path) -> Result<BTreeMap<String, Tensor>, StageError> {
    let shown = path.display();
    let mut magic = [0u8; 4];
    let mut handle =
        std::fs::File::open(path).map_err(|e| StageError::with_source(format!("cannot open pretrained weights {shown}"), e))?;
    let n = handle.read(&mut magic).map_err(|e| StageError::with_source(format!("cannot read pretrained weights {shown}"), e))?;
    let tensors = match &magic[..n] {
        [b'P', b'K', 3, 4] => read_pth(path)?,
        [0x80, 2..=5, ..] => {
            return Err(StageError::msg(format!(
                "pretrained weights {shown} use PyTorch's legacy (pre-1.6) format; re-save them with \
                 `torch.save(torch.load(path), new_path)` and point `pretrained:` at the new file"
            )))
        }
        _ => read_safetensors(path)?,
    };
    if tensors.is_empty() {
        return Err(StageError::msg(format!("pretrained weights {shown} hold no tensors")));
    }
    Ok(tensors)
}

fn read_pth(path: &Path) -> Result<BTreeMap<String, Tensor>, StageError> {
    let shown = path.display();
    let corrupt = |e: candle_core::Error| StageError::msg(format!("pretrained weights {shown} are not a readable PyTorch checkpoint: {e}"));
    let entries = candle_core::pickle::read_all(path).map_err(corrupt)?;
    let mut tensors = BTreeMap::new();
    for (name, tensor) in entries {
        if let Some(t) = candle_to_tch(&tensor).map_err(corrupt)? {
            tensors.insert(name, t);
        }
    }
    Ok(tensors)
}

/// Copies a candle tensor into a float tch tensor; integer tensors (step counters) give `None`.
fn candle_to_tch(tensor: &candle_core::Tensor) -> candle_core::Result<Option<Tensor>> {
    use candle_core::DType;
    if !matches!(tensor.dtype(), DType::F16 | DType::BF16 | DType::F32 | DType::F64) {
        return Ok(None);
    }
    let shape: Vec<i64> = tensor.dims().iter().map(|&d| d as i64).collect();
    let values = tensor.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(Some(Tensor::from_slice(&values).view(shape.as_slice())))
}

fn read_safetensors(path: &Path) -> Result<BTreeMap<String, Tensor>, StageError> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| StageError::with_source(format!("cannot open pretrained weights {shown}"), e))?;
    // SAFETY: the mapping is read-only and dropped before returning; a checkpoint changed on
    // disk meanwhile yields wrong numbers, not unsoundness in our code.
    let bytes =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| StageError::with_source(format!("cannot map pretrained weights {shown}"), e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        StageError::msg(format!("pretrained weights {shown} are neither a PyTorch .pth (zip) checkpoint nor a valid safetensors file: {e}"))
    })?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = match view.dtype() {
            safetensors::Dtype::F16 => Kind::Half,
            safetensors::Dtype::BF16 => Kind::BFloat16,
            safetensors::Dtype::F32 => Kind::Float,
            safetensors::Dtype::F64 => Kind::Double,
            _ => continue,
        };
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)
            .map_err(|e| StageError::with_source(format!("tensor `{name}` in {shown} is malformed"), e))?;
        tensors.insert(name, t.to_kind(Kind::Float));
    }
    Ok(tensors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[i64]) -> Tensor {
        Tensor::zeros(shape, (Kind::Float, tch::Device::Cpu))
    }

    #[test]
    fn torchvision_names_map_onto_the_backbone_and_lstm_head_stays_fresh() {
        let model: HashMap<String, Tensor> =
            [("backbone.conv1.weight", t(&[64, 3, 7, 7])), ("lstm.weight_ih_l0", t(&[2048, 512])), ("fc.weight", t(&[1000, 512]))]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        let file: BTreeMap<String, Tensor> =
            [("conv1.weight", t(&[64, 3, 7, 7])), ("fc.weight", t(&[1000, 512]))].into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let plan = plan(Path::new("w.pth"), Arch::Resnet18Lstm, &model, &file).unwrap();
        assert_eq!(plan.copies.get("backbone.conv1.weight").map(String::as_str), Some("conv1.weight"));
        assert_eq!(plan.kept_fresh, vec!["fc.weight", "lstm.weight_ih_l0"]);
        assert_eq!(plan.unused_in_file, vec!["fc.weight"]);
    }

    #[test]
    fn a_reshaped_inner_layer_is_an_error_naming_it() {
        let model: HashMap<String, Tensor> =
            [("conv1.weight", t(&[64, 3, 7, 7])), ("bn1.weight", t(&[64]))].into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let file: BTreeMap<String, Tensor> =
            [("conv1.weight", t(&[64, 3, 7, 7])), ("bn1.weight", t(&[32]))].into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let err = plan(Path::new("w.pth"), Arch::EarlyFusionResnet18, &model, &file).unwrap_err().message;
        assert!(err.starts_with("pretrained weights w.pth do not fit "), "{err}");
        assert!(err.contains("bn1.weight") && err.contains("[32]") && err.contains("[64]"), "{err}");
    }
}
