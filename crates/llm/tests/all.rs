//! Integration tests of the adapters against recorded exchanges replayed on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_test_support::cassette_server;

#[path = "all/anthropic.rs"]
mod anthropic;
#[path = "all/bad_input.rs"]
mod bad_input;
#[path = "all/common.rs"]
mod common;
#[path = "all/config.rs"]
mod config;
#[path = "all/embeddings.rs"]
mod embeddings;
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
