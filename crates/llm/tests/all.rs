//! Integration tests of the adapters against recorded exchanges replayed on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_test_support::cassette_server;

#[path = "all/anthropic.rs"]
mod anthropic;
#[path = "all/common.rs"]
mod common;
#[path = "all/config.rs"]
mod config;
#[path = "all/faults.rs"]
mod faults;
#[path = "all/ollama.rs"]
mod ollama;
#[path = "all/openai.rs"]
mod openai;
