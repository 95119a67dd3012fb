//! Sign-in building blocks: sealed session cookies, signed URLs and hand-offs, the identity
//! assertion for upstreams and the Auth0 Management API roles client. Pure library code: the
//! proxy (`src/proxy/`) wires these into its endpoints.
//!
//! See `docs/ARCHITECTURE.md`, "Sign-in building blocks", for the formats.
pub mod assertion;
pub mod cookie;
pub mod directory;
pub mod management;
pub mod oidc;
pub mod signed;

pub use assertion::{AssertionCache, AssertionClaims, AssertionError, SigningKey};
pub use cookie::{
    CHUNK_SIZE, CookieOptions, CookieSealer, SealError, SealKey, SessionData, flatten_claims,
    new_session_id, parse_cookie_header,
};
pub use directory::{Directory, DirectoryError};
pub use management::{ManagementClient, ManagementError, Role};
pub use oidc::{Oidc, OidcConfig, OidcError, SignedIn, groups_from_claims};
pub use signed::{HandOff, OAuthState, SignedError, UrlSigner, host_and_port};
