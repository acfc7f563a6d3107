//! Builtin builders: the code that turns a derivation's inputs into its
//! output in the store.
//!
//! Every builder is a [`Builtin`]: a name and a version, which the planner
//! writes into each derivation (so bumping a version changes the ids of
//! everything that builder makes), and the build itself. The [`Registry`]
//! is the one list of them that the planner ([`Def::id`]), the scheduler
//! ([`Registry::get`]) and `diff` ([`names`]) consult. Adding a builder is
//! one module with a `build(&BuildCx)` function and one [`Def`] line here.

pub mod assemble;
mod context;
mod error;
pub mod extract;
pub mod fetch;
pub mod filecaps;
pub mod image;
pub mod initrd;
pub mod kernel;
pub mod lua;
pub mod meta_rpm;
pub mod publish;
pub mod rootfs;
pub mod scriptlets;

pub use context::{BuildCx, Env};
pub use error::Error;

use crate::drv::Builder;
use crate::store::Output;

/// A builder the scheduler can run.
pub trait Builtin: Sync {
    /// The name derivations refer to it by.
    fn name(&self) -> &str;
    /// Bumped whenever the output for the same inputs changes.
    fn version(&self) -> u32;
    /// Builds `cx.drv` from its inputs into `cx.store`.
    fn build(&self, cx: &BuildCx) -> Result<Output, Error>;
}

/// A builtin defined by a function: how cvmbuild's own builders are made.
pub struct Def {
    pub name: &'static str,
    pub version: u32,
    run: fn(&BuildCx) -> Result<Output, Error>,
}

impl Def {
    /// The `builder` field of a derivation this builtin builds.
    pub fn id(&self) -> Builder {
        Builder::builtin(self.name, self.version)
    }
}

impl Builtin for Def {
    fn name(&self) -> &str {
        self.name
    }
    fn version(&self) -> u32 {
        self.version
    }
    fn build(&self, cx: &BuildCx) -> Result<Output, Error> {
        (self.run)(cx)
    }
}

/// Builder names, for code that matches on a derivation's builder.
pub mod names {
    pub const FETCH: &str = "fetch";
    pub const EXTRACT: &str = "extract";
    pub const ASSEMBLE: &str = "assemble";
    pub const META_RPM: &str = "meta-rpm";
    pub const KERNEL: &str = "kernel";
    pub const INITRD: &str = "initrd";
    pub const ROOTFS: &str = "rootfs";
    pub const IMAGE: &str = "image";
    pub const PUBLISH: &str = "publish";
}

pub const FETCH: Def = Def {
    name: names::FETCH,
    version: 1,
    run: fetch::build,
};
pub const EXTRACT: Def = Def {
    name: names::EXTRACT,
    version: 4,
    run: extract::build,
};
pub const ASSEMBLE: Def = Def {
    name: names::ASSEMBLE,
    // 6: the rpm database file is placed after the transaction, not
    // before it: a scriptlet querying it finds none where it found every
    // header, so its output may differ.
    version: 6,
    run: assemble::build,
};
pub const META_RPM: Def = Def {
    name: names::META_RPM,
    version: 1,
    run: meta_rpm::build,
};
pub const KERNEL: Def = Def {
    name: names::KERNEL,
    version: 1,
    run: kernel::build,
};
pub const INITRD: Def = Def {
    name: names::INITRD,
    version: 3,
    run: initrd::build,
};
pub const ROOTFS: Def = Def {
    name: names::ROOTFS,
    version: 3,
    run: rootfs::build,
};
pub const IMAGE: Def = Def {
    name: names::IMAGE,
    version: 1,
    run: image::build,
};
pub const PUBLISH: Def = Def {
    name: names::PUBLISH,
    version: 2,
    run: publish::build,
};

/// The builders a scheduler may run, by name.
pub struct Registry<'a> {
    builtins: Vec<&'a dyn Builtin>,
}

impl<'a> Registry<'a> {
    /// cvmbuild's own builders.
    pub fn standard() -> Registry<'static> {
        Registry {
            builtins: vec![
                &FETCH, &EXTRACT, &ASSEMBLE, &META_RPM, &KERNEL, &INITRD, &ROOTFS, &IMAGE, &PUBLISH,
            ],
        }
    }

    /// A registry of exactly these builders (tests run the scheduler on
    /// fakes).
    pub fn new(builtins: Vec<&'a dyn Builtin>) -> Registry<'a> {
        Registry { builtins }
    }

    /// The builtin that builds derivations naming `builder`. A derivation
    /// planned by another version of a builder cannot be built by this
    /// one: its output would not be what its id promises.
    pub fn get(&self, builder: &Builder) -> Result<&'a dyn Builtin, Error> {
        let (name, version) = match builder {
            Builder::Builtin { name, version } => (name.as_str(), *version),
            Builder::External { tool, .. } => {
                return Err(Error::NoBuilder {
                    builder: builder.to_string(),
                    why: format!("external tool `{tool}` has no builder"),
                })
            }
        };
        let Some(b) = self.builtins.iter().find(|b| b.name() == name) else {
            return Err(Error::NoBuilder {
                builder: builder.to_string(),
                why: "no such builtin in this version of cvmbuild".into(),
            });
        };
        if b.version() != version {
            return Err(Error::NoBuilder {
                builder: builder.to_string(),
                why: format!(
                    "this cvmbuild has version {} of it; evaluate the spec again",
                    b.version()
                ),
            });
        }
        Ok(*b)
    }
}
