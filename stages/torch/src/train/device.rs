//! Choosing where to train: `auto` takes the first CUDA device when libtorch sees one, else
//! the CPU; `cuda` insists on a GPU (an error when none is visible, rather than a silent
//! hour-long CPU run); `cpu` forces the CPU.

use stage_api::StageError;
pub use stages_learn::device::DeviceChoice;
use tch::{Cuda, Device};

/// The device `choice` means on this machine.
pub fn resolve_device(choice: DeviceChoice) -> Result<Device, StageError> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::Cpu),
        DeviceChoice::Auto => Ok(Device::cuda_if_available()),
        DeviceChoice::Cuda if Cuda::is_available() => Ok(Device::Cuda(0)),
        DeviceChoice::Cuda => Err(StageError::msg(
            "`device: cuda` but libtorch sees no CUDA device (is the CUDA build of torch installed, \
                 and the binary linked with -Wl,--no-as-needed?); use `device: auto` to fall back to the CPU",
        )),
    }
}

/// `cpu` or `cuda:N`, for `model.json`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available() {
        assert_eq!(resolve_device(DeviceChoice::Cpu).unwrap(), Device::Cpu);
        assert_eq!(device_name(Device::Cpu), "cpu");
        assert_eq!(device_name(Device::Cuda(1)), "cuda:1");
        if !Cuda::is_available() {
            assert_eq!(resolve_device(DeviceChoice::Auto).unwrap(), Device::Cpu);
            assert!(resolve_device(DeviceChoice::Cuda).unwrap_err().message.contains("no CUDA device"));
        }
    }
}
