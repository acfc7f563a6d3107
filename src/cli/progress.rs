//! Progress on stderr: an indicatif bar on a terminal, plain lines
//! otherwise (CI logs, pipes), one per finished derivation. The scheduler
//! reports through [`crate::build::Reporter`]; failures are only named
//! here, their diagnostics are printed once by `realize`.

use crate::build::Reporter;
use crate::drv::{Builder, Derivation};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: AtomicUsize,
    done: AtomicUsize,
    /// Bytes fetched so far (fetch derivations carry their size).
    bytes: AtomicUsize,
    started: Mutex<Option<std::time::Instant>>,
}

/// The phase a derivation belongs to, for the progress display.
fn phase(d: &Derivation) -> &str {
    match &d.builder {
        Builder::Builtin { name, .. } => name,
        Builder::External { tool, .. } => tool,
    }
}

impl Progress {
    /// `quiet`: nothing at all (for `--json` runs and tests).
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(0);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
                )
                .expect("static template"),
            );
            b
        });
        Progress {
            bar,
            quiet,
            total: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            started: Mutex::new(None),
        }
    }
}

impl Reporter for Progress {
    fn start(&self, to_build: usize, cached: usize) {
        self.total.store(to_build, Ordering::Relaxed);
        *self.started.lock().expect("progress lock") = Some(std::time::Instant::now());
        if let Some(b) = &self.bar {
            b.set_length(to_build as u64);
        } else if !self.quiet && to_build > 0 {
            eprintln!("building {to_build} derivations ({cached} cached)");
        }
    }

    fn begin(&self, d: &Derivation) {
        if let Some(b) = &self.bar {
            b.set_message(format!("[{}] {}", phase(d), d.name));
        }
    }

    fn done(&self, d: &Derivation, built: bool) {
        let n = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if phase(d) == "fetch" {
            let size = d.params.get("size").and_then(|s| s.as_u64()).unwrap_or(0);
            self.bytes.fetch_add(size as usize, Ordering::Relaxed);
        }
        if let Some(b) = &self.bar {
            b.inc(1);
        } else if !self.quiet {
            let total = self.total.load(Ordering::Relaxed);
            let how = if built { "built" } else { "substituted" };
            eprintln!("[{n}/{total}] {how} {}", d.name);
        }
    }

    fn failed(&self, d: &Derivation) {
        if let Some(b) = &self.bar {
            b.println(format!("failed {}", d.name));
        } else if !self.quiet {
            eprintln!("failed {}", d.name);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if self.quiet {
            return;
        }
        let bytes = self.bytes.load(Ordering::Relaxed) as f64;
        let secs = self
            .started
            .lock()
            .expect("progress lock")
            .map_or(0.0, |t| t.elapsed().as_secs_f64());
        if bytes > 0.0 && secs > 0.0 {
            eprintln!(
                "fetched {:.1} MB in {secs:.2} s ({:.1} MB/s)",
                bytes / 1e6,
                bytes / 1e6 / secs
            );
        }
    }
}
