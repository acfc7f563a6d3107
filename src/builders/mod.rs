//! Builtin builders: the code that turns a derivation's inputs into its output.

pub mod meta_rpm;
