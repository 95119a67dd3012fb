//! Pomerium Policy Language.
