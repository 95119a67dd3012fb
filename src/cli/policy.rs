//! `portcullis policy check` and `portcullis policy eval`.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub fn check(_files: &[PathBuf]) -> ExitCode {
    eprintln!("not yet built");
    ExitCode::from(2)
}

pub fn eval(_file: &Path, _input: &Path) -> ExitCode {
    eprintln!("not yet built");
    ExitCode::from(2)
}
