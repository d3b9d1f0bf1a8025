//! Integration tests of the adapters against recorded exchanges replayed on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// The cassette server lives in `baton-test-support`; it is compiled in here by path because
// that crate depends on this one (and on the engine and store), which would make these tests
// build half the workspace.
#[allow(dead_code)]
#[path = "../../test-support/src/cassette_server.rs"]
mod cassette_server;

#[path = "all/anthropic.rs"]
mod anthropic;
#[path = "all/bad_input.rs"]
mod bad_input;
#[path = "all/common.rs"]
mod common;
#[path = "all/config.rs"]
mod config;
#[path = "all/fallback.rs"]
mod fallback;
#[path = "all/faults.rs"]
mod faults;
#[path = "all/ollama.rs"]
mod ollama;
#[path = "all/openai.rs"]
mod openai;
#[path = "all/real_server.rs"]
mod real_server;
