//! Portcullis: an identity-aware Kubernetes ingress controller.
//!
//! See `docs/ARCHITECTURE.md` for how the modules fit together.
pub mod auth;
pub mod cli;
pub mod config;
pub mod controller;
pub mod guard;
pub mod metrics;
pub mod ppl;
pub mod proxy;
pub mod reload;
pub mod routes;
pub mod source;
pub mod tls;
