//! Local build state: what belongs to the machine that builds rather than
//! to the content it builds (which any store backend can hold).

use crate::store::FsStore;

/// Per-derivation locks and logs.
pub trait BuildState: Sync {
    /// Held while one derivation builds, so that two processes never build
    /// it at once; released when the guard drops.
    fn lock(&self, drv_id: &str) -> Result<Box<dyn std::any::Any>, crate::store::Error>;
    /// Stores the build log of `drv_id` (`cvmbuild log`). Best effort:
    /// losing a log must not fail a good build.
    fn write_log(&self, drv_id: &str, log: &str);
}

impl BuildState for FsStore {
    fn lock(&self, drv_id: &str) -> Result<Box<dyn std::any::Any>, crate::store::Error> {
        Ok(Box::new(self.lock_derivation(drv_id)?))
    }

    fn write_log(&self, drv_id: &str, log: &str) {
        if let Ok(path) = self.log_path(drv_id) {
            let _ = std::fs::write(path, log);
        }
    }
}
