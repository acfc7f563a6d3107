//! Command-line interface: parses arguments, calls the library, prints.
//!
//! Conventions: results on stdout, messages and progress on stderr; `--json`
//! for machine-readable output; colours only on a terminal without
//! `NO_COLOR`. Exit codes: 0 success, 1 failure (bad spec, unsatisfiable
//! list, build failure), 2 bad command-line usage.
//!
//! One file per group of subcommands (`eval`, `realize`, `pinning`,
//! `diff`, `store`, `cvmfs`), each with its clap arguments next to the
//! function that runs them; this file holds the command table and the
//! options every subcommand shares ([`Global`]). Results go through
//! [`outln!`]/[`out!`], never `println!`: a reader that goes away
//! (`cvmbuild log DRV | head`) ends the program quietly, as it ends any
//! Unix filter, where `println!` panics on the broken pipe.

/// `println!` for results on stdout (see the module's doc).
macro_rules! outln {
    () => {
        $crate::cli::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for results on stdout (see the module's doc).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_out(format_args!($($arg)*))
    };
}

pub mod client;
mod cvmfs;
mod diff;
mod docs;
mod eval;
mod ids;
pub mod mount;
mod pinning;
mod progress;
mod realize;
mod remote;
mod store;
pub mod update;

use clap::{Parser, Subcommand};
use miette::{miette, Result};
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
2 bad command-line usage.

Environment (every variable cvmbuild reads; README.md, section Environment):
  CVMBUILD_STORE        store directory when --store is not given
  XDG_CACHE_HOME, HOME  else the store is $XDG_CACHE_HOME/cvmbuild/store (an
                        absolute path), else $HOME/.cache/cvmbuild/store
  CVMBUILD_PUBLISH_DIR  published CernVM-FS repositories (--publish-dir;
                        default STORE/cvmfs)
  CVMBUILD_KEYS_DIR     repository keys (--keys-dir; default STORE/cvmfs-keys)
  CVMBUILD_SCRIPTLET_TIMEOUT
                        seconds a package scriptlet may run before its
                        sandbox is killed (default 300)
  CVMBUILD_SCRIPTLET_FILE_SIZE
                        bytes of the largest file a package scriptlet may
                        write (default 1073741824)
  CVMBUILD_SCRIPTLET_MIN_FREE
                        bytes a package scriptlet must leave free where the
                        transaction runs (TMPDIR; default 536870912)
  CVMBUILD_CHECKPOINT_EVERY
                        packages between the transaction checkpoints a
                        rebuild resumes from (default 16; 0: none)
  SOURCE_DATE_EPOCH     latest time an entry of `realize --tar` or `--out`
                        shows: package times after it are clamped to it,
                        entries cvmbuild makes get it (default: the
                        release's epoch)
  NO_COLOR              set (to anything): no colours, even on a terminal
  ALL_PROXY, HTTPS_PROXY, HTTP_PROXY (or lower case), NO_PROXY, no_proxy
                        proxy for repository downloads: the first of the
                        first three that is set is used for every URL,
                        http and https alike; NO_PROXY lists hosts that
                        bypass it
  CVMBUILD_SUBSTITUTERS binary caches for `realize` (space-separated URLs;
                        --substituter)
  CVMBUILD_TRUSTED_KEYS public key files trusted for substitutes and
                        `copy --from` (space-separated; --trusted-key)
  CVMBUILD_SIGN_KEY     secret key file of `copy` (--sign-key)
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
                        credentials of s3:// caches
  AWS_REGION, AWS_DEFAULT_REGION
                        their region (default us-east-1)
  AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL
                        another S3-compatible server (MinIO, Ceph RGW,
                        moto), addressed path-style
  AWS_PROFILE, AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE
                        the profile (default `default`) and the AWS tools'
                        files (~/.aws/credentials, ~/.aws/config) that give
                        what the variables above do not
  TMPDIR                scratch directories of the image builders and of
                        scriptlet runs
  PATH                  where the image builders find mksquashfs, xorriso,
                        mtools, mkfs.fat, syslinux and qemu-img

Completions and man page: `cvmbuild completions bash|zsh|fish|elvish|powershell`,
`cvmbuild man [--dir DIR]`.";

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
    Eval(eval::EvalArgs),
    /// Print derivations of a spec in full.
    Show(eval::ShowArgs),
    /// Print a branch's derivation graph as Graphviz dot or JSON.
    Graph(eval::GraphArgs),
    /// Explain why a package is in a branch's closure and why at that version.
    Why(pinning::WhyArgs),
    /// Re-pin deliberately: all packages, or only the named ones (the rest stay at their locked versions).
    Update(pinning::UpdateArgs),
    /// Build a branch: fetch and extract its packages, assemble the OS tree, build the meta RPM.
    Realize(realize::RealizeArgs),
    /// Print the build log of a derivation (full id or unique prefix).
    Log(realize::LogArgs),
    /// Delete what no GC root reaches and report the bytes freed.
    Gc(store::GcArgs),
    /// Manage GC roots: what `gc` keeps.
    #[command(subcommand)]
    Root(store::RootCommand),
    /// Store maintenance.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Push outputs and every object they reach to a binary cache, with signed output records (only what it lacks); or pull them (--from).
    Copy(remote::CopyArgs),
    /// Signing keys for binary caches.
    #[command(subcommand)]
    Key(remote::KeyCommand),
    /// Compare two releases (SPEC.cvm[#BRANCH] or FILE.lock[#BRANCH]): closure, derivations and why, files. Exit 0 identical, 1 different, 2 error.
    Diff(diff::DiffArgs),
    /// Tags of a published CernVM-FS repository.
    Tag(cvmfs::TagArgs),
    /// Move a branch's tag to an already published release, without rebuilding.
    Promote(cvmfs::PromoteArgs),
    /// List a directory of a CernVM-FS repository over HTTP, verified (no FUSE needed).
    Ls(client::LsArgs),
    /// Mount a CernVM-FS repository read-only with FUSE (foreground, until umount or SIGTERM).
    Mount(mount::MountArgs),
    /// Print a file of a CernVM-FS repository over HTTP, verified (no FUSE needed).
    Cat(client::CatArgs),
    /// On a machine the boot loader pinned: is its tag at a newer release (check), release the pin (apply).
    #[command(subcommand)]
    OsUpdate(update::OsUpdateCommand),
    /// Copy a CernVM-FS repository (every tagged revision) into a Stratum-1 directory, verified; only new objects.
    Replicate(client::ReplicateArgs),
    /// Print a shell completion script generated from these options.
    Completions(docs::CompletionsArgs),
    /// Print the man page (roff), or write one page per subcommand into a directory.
    Man(docs::ManArgs),
}

/// Entry point used by `main`; returns the process exit code.
pub fn main() -> i32 {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = miette::set_hook(Box::new(move |_| {
        Box::new(
            miette::MietteHandlerOpts::new()
                .color(color)
                .unicode(color)
                // Off a terminal a message stays on one line, for grep.
                .wrap_lines(color)
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
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("{report:?}");
            1
        }
    }
}

/// Writes a result to stdout. A closed pipe ends the program with
/// status 0, as ripgrep does: the reader has all it wanted. Any other
/// failure to write a result (a full disk behind a redirection) is an
/// error.
pub(crate) fn write_out(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Runs the parsed command.
fn run(cli: Cli) -> Result<i32> {
    let g = Global {
        store: cli.store,
        jobs: cli.jobs,
    };
    match cli.command {
        Command::Eval(a) => eval::eval_cmd(&g, a),
        Command::Show(a) => eval::show_cmd(&g, a),
        Command::Graph(a) => eval::graph_cmd(&g, a),
        Command::Why(a) => pinning::why_cmd(&g, a),
        Command::Update(a) => pinning::update_cmd(&g, a),
        Command::Realize(a) => realize::realize_cmd(&g, a),
        Command::Log(a) => realize::log_cmd(&g, a),
        Command::Gc(a) => store::gc_cmd(&g, a),
        Command::Root(c) => store::root_cmd(&g, c),
        Command::Store(c) => store::store_cmd(&g, c),
        Command::Copy(a) => remote::copy_cmd(&g, a),
        Command::Key(c) => remote::key_cmd(c),
        Command::Diff(a) => diff::diff_cmd(&g, a),
        Command::Tag(a) => cvmfs::tag_cmd(&g, a),
        Command::Promote(a) => cvmfs::promote_cmd(&g, a),
        Command::Ls(a) => client::ls_cmd(a),
        Command::Mount(a) => mount::mount_cmd(a),
        Command::Cat(a) => client::cat_cmd(a),
        Command::OsUpdate(c) => update::os_update_cmd(c),
        Command::Replicate(a) => client::replicate_cmd(a),
        Command::Completions(a) => docs::completions_cmd(a),
        Command::Man(a) => docs::man_cmd(a),
    }
}

/// Options every subcommand may use.
struct Global {
    store: Option<PathBuf>,
    jobs: Option<usize>,
}

impl Global {
    fn store_dir(&self) -> Result<PathBuf> {
        crate::store::resolve_store_dir(self.store.as_deref(), |k| std::env::var_os(k))
            .map_err(|e| miette!(code = "cli::store", "{e}"))
    }

    /// Evaluation options; the parsed-metadata cache lives in the store
    /// (store-layout.md) so `--store` moves it too.
    fn eval_options(&self, branch: Option<String>, offline: bool) -> crate::eval::Options {
        crate::eval::Options {
            branch,
            offline,
            cache: self.store_dir().ok().map(|d| repodata_cache(&d)),
            keys_dir: std::env::var_os("CVMBUILD_KEYS_DIR")
                .map(PathBuf::from)
                .or_else(|| self.store_dir().ok().map(|d| d.join("cvmfs-keys"))),
            ..Default::default()
        }
    }
}

/// The parsed-repodata cache inside a store (store-layout.md).
fn repodata_cache(store_dir: &std::path::Path) -> PathBuf {
    store_dir.join("cache").join("repodata")
}
