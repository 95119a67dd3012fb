//! Sign-in building blocks: sealed session cookies, signed URLs and hand-offs, the identity
//! assertion for upstreams and the Auth0 Management API roles client.
//!
//! See `docs/ARCHITECTURE.md`, "Sign-in building blocks", for the formats.
pub mod cookie;

pub use cookie::{
    CHUNK_SIZE, CookieOptions, CookieSealer, SealError, SealKey, SessionData, flatten_claims,
    new_session_id, parse_cookie_header,
};
pub mod signed;

pub use signed::{HandOff, OAuthState, SignedError, UrlSigner, host_and_port};
pub mod assertion;

pub use assertion::{AssertionCache, AssertionClaims, AssertionError, SigningKey};
pub mod management;

pub use management::{ManagementClient, ManagementError, Role};
