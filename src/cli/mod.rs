//! Command-line interface: parses arguments, calls the library, prints.
//!
//! Conventions: results on stdout, messages and progress on stderr; `--json`
//! for machine-readable output; colours only on a terminal without
//! `NO_COLOR`. Exit codes: 0 success, 1 failure (bad spec, unsatisfiable
//! list, build failure), 2 bad command-line usage.

mod commands;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  cvmbuild eval examples/cernvm/cernvm.cvm              pin and plan every branch
  cvmbuild eval examples/cernvm/cernvm.cvm --branch production --json
  cvmbuild show examples/minimal/minimal.cvm os-tree    one derivation in full
  cvmbuild graph examples/minimal/minimal.cvm --format dot | dot -Tsvg > g.svg
  cvmbuild realize examples/cernvm/cernvm.cvm --branch production --out /tmp/os

Exit status: 0 success, 1 failure (bad spec, unsatisfiable list, failed build),
2 bad command-line usage.";

/// Declarative, reproducible builds of CernVM-style operating systems.
#[derive(Parser, Debug)]
#[command(name = "cvmbuild", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Store directory (default: $CVMBUILD_STORE, else ~/.cache/cvmbuild/store).
    #[arg(long, global = true, env = "CVMBUILD_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// Parallel jobs (default: number of cores).
    #[arg(short = 'j', long, global = true, value_name = "N")]
    pub jobs: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate a spec: pin each branch's closure (writing SPEC.lock) and plan its derivation graph.
    Eval(commands::EvalArgs),
    /// Print derivations of a spec in full.
    Show(commands::ShowArgs),
    /// Print a branch's derivation graph as Graphviz dot or JSON.
    Graph(commands::GraphArgs),
    /// Explain why a package is in a branch's closure and why at that version.
    Why(commands::WhyArgs),
    /// Re-pin deliberately: all packages, or only the named ones (the rest stay at their locked versions).
    Update(commands::UpdateArgs),
    /// Build a branch: fetch and extract its packages, assemble the OS tree, build the meta RPM.
    Realize(commands::RealizeArgs),
    /// Print the build log of a derivation (full id or unique prefix).
    Log(commands::LogArgs),
    /// Delete what no GC root reaches and report the bytes freed.
    Gc(commands::GcArgs),
    /// Manage GC roots: what `gc` keeps.
    #[command(subcommand)]
    Root(commands::RootCommand),
    /// Store maintenance.
    #[command(subcommand)]
    Store(commands::StoreCommand),
    /// Compare two releases (SPEC.cvm[#BRANCH] or FILE.lock[#BRANCH]): closure, derivations and why, files. Exit 0 identical, 1 different, 2 error.
    Diff(commands::DiffArgs),
    /// Tags of a published CernVM-FS repository.
    Tag(commands::TagArgs),
    /// Move a branch's tag to an already published release, without rebuilding.
    Promote(commands::PromoteArgs),
}

/// Entry point used by `main`; returns the process exit code.
pub fn main() -> i32 {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(color)
                .context_lines(1)
                .build(),
        )
    }));
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            1
        }
    }
}
