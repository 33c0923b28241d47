//! Workspace-level end-to-end tests of virtex-rs live in `tests/tests/`; this
//! library is empty on purpose (the crate exists to hold them).
