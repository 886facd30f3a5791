//! Finding the external programs the video stages run (`ffmpeg`, `ffprobe`) on `PATH`.

use std::path::{Path, PathBuf};

/// The first executable file called `name` in a directory of `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// `ffmpeg` on `PATH`, or an error message saying how to get it.
pub fn ffmpeg() -> Result<PathBuf, stage_api::StageError> {
    find_on_path("ffmpeg").ok_or_else(|| {
        stage_api::StageError::msg(
            "ffmpeg was not found on PATH: install it (e.g. `apt install ffmpeg`) or put a static build's \
             directory on PATH",
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_sh_but_not_a_made_up_program() {
        assert!(super::find_on_path("sh").is_some());
        assert!(super::find_on_path("no-such-program-xyz").is_none());
    }
}
