//! libtorch's errors as stage errors.
//!
//! tch's infallible calls (`forward`, `matmul`, `conv2d`, ...) unwrap libtorch's error into a
//! panic, and the model code uses them throughout, as tch's own models do. The stages therefore
//! run their libtorch work through [`catch`], which turns such a panic back into a
//! [`StageError`] with libtorch's message (out of memory, a shape mismatch) and a hint, instead
//! of a panic the worker reports as one.

use std::panic::{catch_unwind, AssertUnwindSafe};

use stage_api::{panic_message, StageError};

/// Runs `work`; a panic out of libtorch becomes `Err("<what>: libtorch error: <message>")`.
pub fn catch<T>(what: &str, work: impl FnOnce() -> Result<T, StageError>) -> Result<T, StageError> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(panic) => Err(StageError::msg(describe(what, &panic_message(&panic)))),
    }
}

fn describe(what: &str, panic: &str) -> String {
    match torch_message(panic) {
        Some(message) => format!("{what}: libtorch error: {message}{}", hint(&message)),
        None => format!("{what}: {panic}"),
    }
}

/// libtorch's message inside a tch panic (`... Err value: Torch("<message>\nException raised
/// from ...")`), without the C++ backtrace.
fn torch_message(panic: &str) -> Option<String> {
    let start = panic.find("Torch(\"")? + "Torch(\"".len();
    let end = panic.rfind("\")")?;
    let escaped = panic.get(start..end)?;
    let text = escaped.replace("\\n", "\n").replace("\\\"", "\"").replace("\\'", "'").replace("\\\\", "\\");
    let text = text.split("\nException raised from").next().unwrap_or(&text);
    Some(text.trim().to_owned())
}

fn hint(message: &str) -> &'static str {
    if message.contains("out of memory") {
        " (try a smaller `batch_size`, `amp: true` on a GPU, or a smaller `size` in extract)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use tch::{Device, Kind, Tensor};

    use super::*;

    #[test]
    fn a_shape_error_becomes_a_stage_error_with_libtorchs_message() {
        let err = catch("epoch 3", || {
            let a = Tensor::zeros([2, 3], (Kind::Float, Device::Cpu));
            let b = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
            Ok(a.matmul(&b))
        })
        .unwrap_err();
        assert!(
            err.message.starts_with("epoch 3: libtorch error: mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("Exception raised from"), "no C++ backtrace: {}", err.message);
        assert!(!err.message.contains("panicked"), "{}", err.message);
    }

    #[test]
    fn out_of_memory_gets_a_hint_and_other_panics_keep_their_text() {
        let panic = r#"called `Result::unwrap()` on an `Err` value: Torch("CUDA out of memory. Tried to allocate 2.00 GiB\nException raised from malloc at x.cpp:1")"#;
        let text = describe("epoch 1", panic);
        assert!(
            text.starts_with("epoch 1: libtorch error: CUDA out of memory. Tried to allocate 2.00 GiB (try a smaller `batch_size`"),
            "{text}"
        );
        assert_eq!(describe("evaluate", "index out of bounds"), "evaluate: index out of bounds");
        assert_eq!(catch("x", || Ok(1)).unwrap(), 1);
    }
}
