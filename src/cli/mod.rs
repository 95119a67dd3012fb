//! The command line: subcommands wiring the library together.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod policy;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Identity-aware ingress controller"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate or evaluate policies (PPL files or Policy manifests).
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Check PPL files or Policy manifests; errors as FILE:LINE:COL: message. Exit 0 valid, 2 invalid.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Evaluate one policy against one request context (JSON); prints the decision as JSON.
    Eval {
        file: PathBuf,
        #[arg(long)]
        input: PathBuf,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Policy { command } => match command {
            PolicyCommand::Check { files } => policy::check(&files),
            PolicyCommand::Eval { file, input } => policy::eval(&file, &input),
        },
    }
}
