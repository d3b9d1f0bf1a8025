//! test-support
pub mod cassette_server;
