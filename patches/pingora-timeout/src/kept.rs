// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

//! A timer kept from one wait to the next.
//!
//! A server waits for each next request on a kept-alive connection for at most its keep-alive
//! timeout. With [crate::timeout], every such wait that pends registers a timer and drops it
//! again when the request arrives, typically long before the timer would fire. A [KeptTimer]
//! belongs to the connection instead: the timer registered for one wait stays armed for the
//! next. A later wait of the same length ends later than the timer fires, so when the timer
//! fires the wait is not over yet: only then is a timer registered again, for what is left.
//! A connection that gets a request more often than once per timeout registers about one
//! timer per timeout instead of one per request.

use crate::fast_timeout::{FastOrTokioTimeout, TIMER_MANAGER};
use crate::{Delay, Elapsed, ToTimeout};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{self, Poll, Waker};
use std::time::Duration;

/// A timer for the repeated waits of one task, such as a connection's waits for its next
/// request; see the [module](self).
///
/// Its waits end when their future is ready or when their own timeout has passed, exactly as
/// with [crate::timeout] (at the same 10 ms resolution). Only how often a timer is registered
/// differs.
#[derive(Default)]
pub struct KeptTimer {
    /// The timer registered last, in a box of its own so that the connection's sessions hand
    /// on a pointer; the box is reused when the timer is registered again.
    armed: Option<Box<Armed>>,
}

struct Armed {
    /// When the timer was registered to fire, since the fast timers' zero point; it fires then
    /// or up to the resolution later, never sooner.
    fires_at: Duration,
    delay: Delay,
    /// The waker the timer wakes, once a wait pended on it: a wait polled with one that wakes
    /// the same task needs nothing of the timer but whether it fired (no lock is taken).
    waker: Option<Waker>,
}

impl std::fmt::Debug for KeptTimer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptTimer")
            .field("fires_at", &self.armed.as_ref().map(|a| a.fires_at))
            .finish()
    }
}

impl KeptTimer {
    /// A timer with nothing registered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wait for `future`, at most `duration` from its first pending poll, as
    /// [crate::timeout] would; the timer this registers stays with `self` for later waits.
    pub fn timeout<T: Future>(&mut self, duration: Duration, future: T) -> KeptTimeout<'_, T> {
        KeptTimeout {
            value: future,
            kept: self,
            duration,
            deadline: None,
        }
    }

    /// Whether a timer is armed (a wait pended and has not timed out since).
    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Register a timer firing at `deadline` (since the fast timers' zero point).
    fn arm(&mut self, deadline: Duration) {
        let rest = deadline.saturating_sub(TIMER_MANAGER.since_zero());
        let armed = Armed {
            fires_at: deadline,
            delay: FastOrTokioTimeout::create(rest).delay(),
            waker: None,
        };
        match &mut self.armed {
            Some(kept) => **kept = armed,
            None => self.armed = Some(Box::new(armed)),
        }
    }
}

pin_project! {
    /// A wait of [KeptTimer::timeout].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct KeptTimeout<'a, T> {
        #[pin]
        value: T,
        kept: &'a mut KeptTimer,
        duration: Duration,
        // When this wait times out, since the fast timers' zero point: set when it first pends.
        deadline: Option<Duration>,
    }
}

impl<T: Future> Future for KeptTimeout<'_, T> {
    type Output = Result<T::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Self::Output> {
        let me = self.project();
        if let Poll::Ready(v) = me.value.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let duration = *me.duration;
        let deadline = *me
            .deadline
            .get_or_insert_with(|| TIMER_MANAGER.since_zero().saturating_add(duration));
        loop {
            // A timer firing no later than this wait's end serves it: it fires either at the
            // end (then the wait is over) or before it (then it is armed again). Otherwise
            // (none yet, or one that fires after this shorter wait should end) one is armed.
            if me.kept.armed.as_ref().is_none_or(|a| a.fires_at > deadline) {
                me.kept.arm(deadline);
            }
            let Some(armed) = me.kept.armed.as_deref_mut() else {
                // Armed just above; were it not, the wait ends rather than waits unwatched.
                return Poll::Ready(Err(Elapsed));
            };
            let fired = match (&armed.waker, armed.delay.fast_fired()) {
                // The timer wakes this task already.
                (Some(waker), Some(fired)) if waker.will_wake(cx.waker()) => fired,
                _ => match Pin::new(&mut armed.delay).poll(cx) {
                    Poll::Pending => {
                        // Only a fast timer's wait is read without polling it (above); a
                        // tokio timer keeps its waker itself.
                        if armed.delay.fast_fired().is_some() {
                            armed.waker = Some(cx.waker().clone());
                        }
                        false
                    }
                    Poll::Ready(()) => true,
                },
            };
            if !fired {
                return Poll::Pending;
            }
            if armed.fires_at >= deadline {
                // A timer registered for this wait's end (or later) has fired: it is over.
                me.kept.armed = None;
                return Poll::Ready(Err(Elapsed));
            }
            // An earlier wait's timer fired before this wait's end: arm one for the rest.
            me.kept.arm(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const MS: Duration = Duration::from_millis(1);

    fn fires_at(kept: &KeptTimer) -> Option<Duration> {
        kept.armed.as_ref().map(|a| a.fires_at)
    }

    #[tokio::test]
    async fn a_ready_future_registers_no_timer() {
        let mut kept = KeptTimer::new();
        assert_eq!(kept.timeout(50 * MS, async { 7 }).await.ok(), Some(7));
        assert!(fires_at(&kept).is_none());
    }

    /// Later waits keep the timer the first one registered, as long as it fires before they
    /// end. (Registering one per wait, as `timeout` does, fails this.)
    #[tokio::test]
    async fn later_waits_keep_the_timer_of_the_first() {
        let mut kept = KeptTimer::new();
        let mut first = None;
        for _ in 0..5 {
            let got = kept.timeout(10_000 * MS, tokio::time::sleep(3 * MS)).await;
            assert!(got.is_ok());
            let at = fires_at(&kept).expect("a pending wait registers a timer");
            assert_eq!(*first.get_or_insert(at), at);
        }
    }

    /// A wait after the first lasts its own timeout from its own start, although the timer
    /// kept from the first fires sooner.
    #[tokio::test]
    async fn a_later_wait_lasts_its_whole_timeout() {
        let mut kept = KeptTimer::new();
        let timeout = 200 * MS;
        let got = kept.timeout(timeout, tokio::time::sleep(120 * MS)).await;
        assert!(got.is_ok());
        let start = Instant::now();
        let got = kept.timeout(timeout, std::future::pending::<()>()).await;
        let took = start.elapsed();
        assert!(got.is_err());
        assert!(took >= timeout, "ended after {took:?}");
        assert!(took < timeout * 3, "ended after {took:?}");
    }

    /// A shorter wait is not served by a longer wait's timer.
    #[tokio::test]
    async fn a_shorter_wait_arms_its_own_timer() {
        let mut kept = KeptTimer::new();
        let got = kept.timeout(60_000 * MS, tokio::time::sleep(2 * MS)).await;
        assert!(got.is_ok());
        let start = Instant::now();
        let got = kept.timeout(50 * MS, std::future::pending::<()>()).await;
        let took = start.elapsed();
        assert!(got.is_err());
        assert!(took >= 50 * MS && took < 5_000 * MS, "ended after {took:?}");
        // After a timeout, the next wait registers anew.
        assert!(fires_at(&kept).is_none());
    }

    /// A wait polled with another waker gets that one woken when the timer fires, and the
    /// first is left alone. (Were the waker not compared, the second would never be woken.)
    #[tokio::test]
    async fn a_wait_polled_with_another_waker_wakes_that_one() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (a, b) = (
            Arc::new(Count(AtomicUsize::new(0))),
            Arc::new(Count(AtomicUsize::new(0))),
        );
        let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
        let mut kept = KeptTimer::new();
        let mut wait = Box::pin(kept.timeout(30 * MS, std::future::pending::<()>()));
        for waker in [&wa, &wa, &wb] {
            let mut cx = task::Context::from_waker(waker);
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        let start = Instant::now();
        while b.0.load(Ordering::SeqCst) == 0 && start.elapsed() < 5_000 * MS {
            tokio::time::sleep(5 * MS).await;
        }
        assert_eq!(
            b.0.load(Ordering::SeqCst),
            1,
            "the newest waker is woken once"
        );
        assert_eq!(a.0.load(Ordering::SeqCst), 0, "the replaced one is not");
        let mut cx = task::Context::from_waker(&wb);
        assert!(matches!(
            wait.as_mut().poll(&mut cx),
            Poll::Ready(Err(Elapsed))
        ));
    }

    /// The value wins when it is ready before the timeout, however many waits came before.
    #[tokio::test]
    async fn a_wait_ends_with_its_value_before_the_timeout() {
        let mut kept = KeptTimer::new();
        for n in 0..3u32 {
            let got = kept
                .timeout(1_000 * MS, async move {
                    tokio::time::sleep(MS).await;
                    n
                })
                .await;
            assert_eq!(got.ok(), Some(n));
        }
    }
}
