//! Builtin builders: the code that turns a derivation's inputs into its
//! output in the store.

pub mod assemble;
pub mod extract;
pub mod meta_rpm;
