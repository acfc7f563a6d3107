//! Command-line interface.

/// Entry point used by `main`; returns the process exit code.
pub fn main() -> i32 {
    0
}
