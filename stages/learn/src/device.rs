//! The `device` parameter: `auto` takes the first CUDA device when libtorch sees one, else the
//! CPU; `cuda` insists on a GPU (an error when none is visible, rather than a silent hour-long
//! CPU run); `cpu` forces the CPU. `stages-torch` resolves it to a libtorch device.

use serde::{Deserialize, Serialize};

/// The `device` parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda,
}
