//! `portcullis policy check` and `portcullis policy eval`.
//!
//! Errors go to stderr as `FILE:LINE:COL: message`; exit status 0 when everything is valid,
//! 2 otherwise.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::ppl::{PolicyDocument, PolicyError, RequestContext, parse_file};

const INVALID: u8 = 2;

/// Validate PPL files and Policy manifests; `FILE: ok` per valid file.
pub fn check(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        let name = file.display().to_string();
        match load_policies(file) {
            Ok(_) => println!("{name}: ok"),
            Err(errors) => {
                ok = false;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INVALID)
    }
}

/// Evaluate one policy against one request context; one JSON line on stdout.
pub fn eval(file: &Path, input: &Path) -> ExitCode {
    let policy = load_policies(file).and_then(|docs| match docs.as_slice() {
        [one] => Ok(one.policy.clone()),
        [_, second, ..] => Err(vec![
            PolicyError::new(
                second.pos,
                format!(
                    "policy eval takes one policy, but this file holds {}",
                    docs.len()
                ),
            )
            .in_file(&file.display().to_string()),
        ]),
        [] => Err(vec![format!("{}: no policy in this file", file.display())]),
    });
    let context = read(input).and_then(|text| {
        RequestContext::parse(&text, chrono::Utc::now()).map_err(|errors| in_file(input, &errors))
    });
    match (policy, context) {
        (Ok(policy), Ok(context)) => {
            let evaluation = policy.evaluate(&context.request());
            match serde_json::to_string(&evaluation) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cannot print the evaluation: {e}");
                    ExitCode::from(INVALID)
                }
            }
        }
        (policy, context) => {
            for e in policy.err().into_iter().chain(context.err()).flatten() {
                eprintln!("{e}");
            }
            ExitCode::from(INVALID)
        }
    }
}

/// The policies of a file, or its errors formatted as `FILE:LINE:COL: message`.
fn load_policies(file: &Path) -> Result<Vec<PolicyDocument>, Vec<String>> {
    let text = read(file)?;
    parse_file(&text).map_err(|errors| in_file(file, &errors))
}

fn read(file: &Path) -> Result<String, Vec<String>> {
    std::fs::read_to_string(file).map_err(|e| vec![format!("{}: cannot read: {e}", file.display())])
}

fn in_file(file: &Path, errors: &[PolicyError]) -> Vec<String> {
    let name = file.display().to_string();
    errors.iter().map(|e| e.in_file(&name)).collect()
}
