//! Guards against hostile requests, applied before routing and policy. Pure functions over
//! text; a leaf: nothing else of Portcullis is used here.
//!
//! - [`path`]: the canonical request path (what is routed, evaluated and forwarded);
//! - [`host`]: the request authority, split into host and port and checked;
//! - [`cookies`]: `Cookie` headers parsed once, with bounded work;
//! - [`headers`]: header names compared in every spelling, and the trusted client address
//!   from `X-Forwarded-For`;
//! - [`bearer`]: identity provider tokens in the forms Pomerium reads (`bearer_token_format`).
//!
//! Every module has a hidden `fuzzing::fuzz_one(&[u8])` for the `cargo fuzz` targets.

pub mod bearer;
pub mod cookies;
pub mod headers;
pub mod host;
pub mod path;
