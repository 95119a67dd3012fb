//! A user's roles as sign-in needs them from Auth0's Management API: cached per user for a
//! short time (a user signing in on several hosts costs one call), and behind a circuit
//! breaker that honours `Retry-After`, so a rate-limited or failing API is not hammered. A
//! failure is returned, never hidden: sign-in decides to stop rather than issue a session
//! without the roles a `deny` rule may depend on.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{ManagementClient, ManagementError, Role};

/// How long a user's roles are reused.
pub const ROLES_TTL: Duration = Duration::from_secs(60);
/// At most this many users' roles are cached.
const CAPACITY: usize = 10_000;
/// How long the breaker stays open after a failure that names no `Retry-After`.
const DEFAULT_PAUSE: Duration = Duration::from_secs(5);
/// The longest pause a `Retry-After` may impose.
const MAX_PAUSE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("the Management API is paused after a failure; retry in {}s", .retry_after.as_secs().max(1))]
    Paused { retry_after: Duration },
    #[error("{source}")]
    Failed {
        #[source]
        source: ManagementError,
        /// When it is worth trying again (for transient failures).
        retry_after: Option<Duration>,
    },
}

impl DirectoryError {
    /// When a retry may succeed; `None` when waiting will not help (credentials, a 4xx).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DirectoryError::Paused { retry_after } => Some(*retry_after),
            DirectoryError::Failed { retry_after, .. } => *retry_after,
        }
    }
}

pub struct Directory {
    client: ManagementClient,
    cache: Mutex<HashMap<String, (Instant, Vec<Role>)>>,
    paused_until: Mutex<Option<Instant>>,
}

impl Directory {
    pub fn new(client: ManagementClient) -> Directory {
        Directory {
            client,
            cache: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
        }
    }

    /// The roles of `user`: from the cache when read in the last [`ROLES_TTL`], else from the
    /// API unless the breaker is open.
    pub async fn roles(&self, user: &str) -> Result<Vec<Role>, DirectoryError> {
        let now = Instant::now();
        if let Some((at, roles)) = self.lock_cache().get(user)
            && now.duration_since(*at) < ROLES_TTL
        {
            return Ok(roles.clone());
        }
        if let Some(until) = *self.lock_pause()
            && until > now
        {
            return Err(DirectoryError::Paused {
                retry_after: until - now,
            });
        }
        match self.client.user_roles(user).await {
            Ok(roles) => {
                let mut cache = self.lock_cache();
                if cache.len() >= CAPACITY {
                    cache.retain(|_, (at, _)| now.duration_since(*at) < ROLES_TTL);
                    if cache.len() >= CAPACITY {
                        cache.clear();
                    }
                }
                cache.insert(user.to_string(), (now, roles.clone()));
                Ok(roles)
            }
            Err(source) => {
                let pause = match &source {
                    ManagementError::RateLimited { retry_after } => {
                        Some(retry_after.unwrap_or(DEFAULT_PAUSE).min(MAX_PAUSE))
                    }
                    e if e.is_transient() => Some(DEFAULT_PAUSE),
                    _ => None,
                };
                if let Some(pause) = pause {
                    *self.lock_pause() = Some(Instant::now() + pause);
                }
                Err(DirectoryError::Failed {
                    source,
                    retry_after: pause,
                })
            }
        }
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Vec<Role>)>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_pause(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.paused_until.lock().unwrap_or_else(|e| e.into_inner())
    }
}
