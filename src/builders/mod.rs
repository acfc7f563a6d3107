//! Builders: the steps that turn derivation inputs into store objects.

pub mod extract;
