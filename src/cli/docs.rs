//! `completions` and `man`: shell completion scripts and man pages,
//! generated from the clap definitions so they never drift from the
//! options the program really takes.

use super::Cli;
use clap::{Args, CommandFactory};
use miette::{miette, Result};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Write `cvmbuild.1` and one `cvmbuild-SUBCOMMAND.1` per subcommand
    /// into this directory instead of printing `cvmbuild.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Prints the completion script, e.g. `source <(cvmbuild completions bash)`.
pub(super) fn completions_cmd(a: CompletionsArgs) -> Result<i32> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cvmbuild", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(0)
}

/// Prints cvmbuild(1) as roff, or writes every page into `--dir`.
pub(super) fn man_cmd(a: ManArgs) -> Result<i32> {
    let cmd = Cli::command();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| miette!(code = "cli::man", "{}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir).map_err(|e| {
                miette!(
                    code = "cli::man",
                    "writing man pages to {}: {e}",
                    dir.display()
                )
            })?;
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| miette!(code = "cli::man", "rendering the man page: {e}"))?;
            out!("{}", String::from_utf8_lossy(&out));
        }
    }
    Ok(0)
}
