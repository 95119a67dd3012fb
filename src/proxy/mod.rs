//! The data plane: a Pingora HTTP proxy that decides each request (route, policy, sign-in),
//! forwards allowed ones and answers the rest itself. It reads the route sink; it owns no
//! configuration.

mod decide;
pub mod ops;
mod portal;
pub mod probe;
mod reply;
mod request;
mod sanitize;
mod service;
pub mod signin;
mod upstream;

pub use service::Portcullis;
pub use signin::{Discovery, SignIn};
pub use upstream::HEADER_HEADROOM;
