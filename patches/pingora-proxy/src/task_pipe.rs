// Written for this patched copy of pingora-proxy (see PATCH.md); Apache-2.0, as the crate.

//! The bounded queue that carries [`HttpTask`](pingora_core::protocols::http::HttpTask)s between
//! the two halves of an HTTP/1 proxy session (the downstream and the upstream half that
//! `proxy_1to1` runs side by side).
//!
//! It does what the halves used from a bounded tokio `mpsc` channel of [`CAPACITY`] and no more:
//! one sender and one receiver; `reserve`/`try_reserve` hand out permits that count against the
//! capacity until they are used or dropped; `recv` and `reserve` can be cancelled (dropped before
//! they complete) at any point without losing an item or a permit, so they can be `select!`
//! branches; each end sees the other end dropped (`recv` returns `None` once the queue is empty,
//! `reserve` and `send` fail, `is_closed` is true).
//!
//! Every request makes two of them, so they are cheap to make: one allocation holding the state
//! and a fixed ring of [`CAPACITY`] slots, and an uncontended lock per operation. A waker is
//! stored only by an end that has to wait and woken only if it is there.
//!
//! Like tokio's channel, `recv` and `reserve` spend the task's cooperative budget
//! ([`tokio::task::coop`]) when they complete, and return `Pending` (the task woken again at
//! once) when it is spent, so a task that always finds an item or room still lets others run;
//! waiting spends none, and neither does `reserve` on a closed pipe. One difference: tokio's
//! `reserve` (since 1.54) takes the permit before it yields for the budget and holds it in the
//! pending future; this one yields before it takes anything, as tokio's did before.

use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{ready, Context, Poll, Waker};
use tokio::task::coop;

/// How many items and unused permits a pipe holds at most.
pub(crate) const CAPACITY: usize = crate::TASK_BUFFER_SIZE;

/// Makes a pipe: its sending and its receiving end.
pub(crate) fn pipe<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            slots: std::array::from_fn(|_| None),
            head: 0,
            len: 0,
            reserved: 0,
            receiver_waker: None,
            sender_waker: None,
            sender_gone: false,
            receiver_gone: false,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
}

struct State<T> {
    /// A ring: `len` items from `head`.
    slots: [Option<T>; CAPACITY],
    head: usize,
    len: usize,
    /// Permits handed out and not yet used or dropped.
    reserved: usize,
    /// The receiver waiting for an item (or for the sender to go).
    receiver_waker: Option<Waker>,
    /// The sender waiting for room (or for the receiver to go).
    sender_waker: Option<Waker>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while holding the lock; a poisoned lock still holds a whole state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps `cx`'s waker in `slot`, cloning it only if it is not the one already there.
fn register(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// The receiver is gone: nothing sent now would be received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the receiving half of the task pipe is gone")
    }
}

impl std::error::Error for Closed {}

/// Why [`Sender::try_reserve`] gave no permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TryReserveError {
    /// Items and permits take the whole capacity.
    Full,
    /// The receiver is gone.
    Closed,
}

impl fmt::Display for TryReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryReserveError::Full => f.write_str("the task pipe is full"),
            TryReserveError::Closed => Closed.fmt(f),
        }
    }
}

impl std::error::Error for TryReserveError {}

/// [`Sender::send`] found the receiver gone; the item comes back.
pub(crate) struct SendError<T>(pub T);

impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SendError(..)")
    }
}

impl<T> fmt::Display for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Closed.fmt(f)
    }
}

impl<T> std::error::Error for SendError<T> {}

/// The sending end.
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Sender<T> {
    /// A permit for one item, waiting for room. Fails once the receiver is gone. Cancelling it
    /// (dropping it before it completes) takes no permit.
    pub(crate) async fn reserve(&self) -> Result<Permit<'_, T>, Closed> {
        poll_fn(|cx| self.poll_reserve(cx)).await
    }

    fn poll_reserve(&self, cx: &mut Context<'_>) -> Poll<Result<Permit<'_, T>, Closed>> {
        let mut state = self.shared.lock();
        // A closed pipe answers at once and spends no budget, as tokio's channel does.
        if state.receiver_gone {
            return Poll::Ready(Err(Closed));
        }
        // A spent budget returns `Pending` here, before a permit is taken.
        let budget = ready!(coop::poll_proceed(cx));
        match self.take_permit(&mut state) {
            Ok(permit) => {
                budget.made_progress();
                Poll::Ready(Ok(permit))
            }
            Err(TryReserveError::Closed) => Poll::Ready(Err(Closed)),
            Err(TryReserveError::Full) => {
                // Waiting gives the budget back (`budget` dropped without progress).
                register(&mut state.sender_waker, cx);
                Poll::Pending
            }
        }
    }

    /// A permit, under the lock, if the receiver is there and the pipe has room.
    fn take_permit(&self, state: &mut State<T>) -> Result<Permit<'_, T>, TryReserveError> {
        if state.receiver_gone {
            return Err(TryReserveError::Closed);
        }
        if state.len + state.reserved >= CAPACITY {
            return Err(TryReserveError::Full);
        }
        state.reserved += 1;
        Ok(Permit {
            shared: &self.shared,
        })
    }

    /// A permit for one item if there is room now.
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_, T>, TryReserveError> {
        self.take_permit(&mut self.shared.lock())
    }

    /// Sends `item`, waiting for room; gives it back if the receiver is gone.
    pub(crate) async fn send(&self, item: T) -> Result<(), SendError<T>> {
        match self.reserve().await {
            Ok(permit) => {
                permit.send(item);
                Ok(())
            }
            Err(Closed) => Err(SendError(item)),
        }
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.sender_gone = true;
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Room for one item, taken from the pipe's capacity until it is used or dropped.
pub(crate) struct Permit<'a, T> {
    shared: &'a Shared<T>,
}

impl<T> Permit<'_, T> {
    /// Puts `item` in the pipe. If the receiver is gone, `item` is dropped.
    pub(crate) fn send(self, item: T) {
        let shared = self.shared;
        // The permit is used up here, not given back by its `Drop`.
        std::mem::forget(self);
        let mut state = shared.lock();
        state.reserved -= 1;
        if state.receiver_gone {
            drop(state);
            drop(item);
            return;
        }
        let tail = (state.head + state.len) % CAPACITY;
        state.slots[tail] = Some(item);
        state.len += 1;
        let waker = state.receiver_waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Permit<'_, T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.reserved -= 1;
            state.sender_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> fmt::Debug for Permit<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

/// The receiving end.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Receiver<T> {
    /// The next item, waiting for one; `None` once the queue is empty and the sender is gone.
    /// Cancelling it (dropping it before it completes) loses no item.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        // A spent budget returns `Pending` here, before anything is taken.
        let budget = ready!(coop::poll_proceed(cx));
        let mut state = self.shared.lock();
        if state.len > 0 {
            let head = state.head;
            let item = state.slots[head].take();
            state.head = (head + 1) % CAPACITY;
            state.len -= 1;
            let waker = state.sender_waker.take();
            drop(state);
            budget.made_progress();
            if let Some(waker) = waker {
                waker.wake();
            }
            return Poll::Ready(item);
        }
        if state.sender_gone {
            budget.made_progress();
            return Poll::Ready(None);
        }
        // Waiting gives the budget back (`budget` dropped without progress).
        register(&mut state.receiver_waker, cx);
        Poll::Pending
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let (items, waker) = {
            let mut state = self.shared.lock();
            state.receiver_gone = true;
            state.len = 0;
            let items: [Option<T>; CAPACITY] =
                std::mem::replace(&mut state.slots, std::array::from_fn(|_| None));
            (items, state.sender_waker.take())
        };
        // The items left are dropped outside the lock.
        drop(items);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count::default());
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn the_halves_can_live_in_a_spawned_task() {
        fn send_and_sync<X: Send + Sync>() {}
        send_and_sync::<Sender<pingora_core::protocols::http::HttpTask>>();
        send_and_sync::<Receiver<pingora_core::protocols::http::HttpTask>>();
        send_and_sync::<Permit<'static, pingora_core::protocols::http::HttpTask>>();
    }

    #[tokio::test]
    async fn items_arrive_in_order_across_the_ring() {
        let (tx, mut rx) = pipe();
        for round in 0..3 {
            for i in 0..CAPACITY {
                tx.send(round * 10 + i).await.unwrap();
            }
            for i in 0..CAPACITY {
                assert_eq!(rx.recv().await, Some(round * 10 + i));
            }
        }
        drop(tx);
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn permits_and_items_share_the_capacity() {
        let (tx, mut rx) = pipe::<u32>();
        let first = tx.try_reserve().unwrap();
        let mut held = Vec::new();
        for _ in 1..CAPACITY {
            held.push(tx.try_reserve().unwrap());
        }
        assert_eq!(tx.try_reserve().unwrap_err(), TryReserveError::Full);
        first.send(1);
        // Sent, the item still takes its place until it is received.
        assert_eq!(tx.try_reserve().unwrap_err(), TryReserveError::Full);
        assert_eq!(rx.recv().now_or_never(), Some(Some(1)));
        let again = tx.try_reserve().unwrap();
        // A permit dropped unused gives its room back.
        drop(held.pop());
        let another = tx.try_reserve().unwrap();
        drop((again, another, held));
        assert!(rx.recv().now_or_never().is_none(), "nothing was sent");
    }

    #[test]
    fn a_sender_waiting_for_room_is_woken_when_an_item_is_received() {
        let (tx, mut rx) = pipe::<u32>();
        for i in 0..CAPACITY as u32 {
            tx.try_reserve().unwrap().send(i);
        }
        let (wakes, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut reserve = Box::pin(tx.reserve());
        assert!(reserve.as_mut().poll(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        assert_eq!(rx.recv().now_or_never(), Some(Some(0)));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        match reserve.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(permit)) => permit.send(9),
            other => panic!("no permit after room was made: {other:?}"),
        };
    }

    #[test]
    fn a_receiver_waiting_for_an_item_is_woken_when_one_is_sent() {
        let (tx, mut rx) = pipe::<u32>();
        let (wakes, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        {
            let mut recv = Box::pin(rx.recv());
            assert!(recv.as_mut().poll(&mut cx).is_pending());
            tx.try_reserve().unwrap().send(5);
            assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
            assert_eq!(recv.as_mut().poll(&mut cx), Poll::Ready(Some(5)));
        }
        // Nobody waits now: sending wakes nothing.
        tx.try_reserve().unwrap().send(6);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.recv().now_or_never(), Some(Some(6)));
    }

    #[test]
    fn cancelled_receives_and_reservations_lose_nothing() {
        let (tx, mut rx) = pipe::<u32>();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        // A receive polled and dropped takes no item.
        {
            let mut recv = Box::pin(rx.recv());
            assert!(recv.as_mut().poll(&mut cx).is_pending());
        }
        for i in 0..CAPACITY as u32 {
            tx.try_reserve().unwrap().send(i);
        }
        // A reservation polled on a full pipe and dropped takes no permit.
        {
            let mut reserve = Box::pin(tx.reserve());
            assert!(reserve.as_mut().poll(&mut cx).is_pending());
        }
        for i in 0..CAPACITY as u32 {
            assert_eq!(rx.recv().now_or_never(), Some(Some(i)));
        }
        // The whole capacity is there again.
        let permits: Vec<_> = (0..CAPACITY).map(|_| tx.try_reserve().unwrap()).collect();
        assert_eq!(permits.len(), CAPACITY);
    }

    #[test]
    fn the_receiver_sees_the_sender_go_after_the_items_left() {
        let (tx, mut rx) = pipe::<u32>();
        let (wakes, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        tx.try_reserve().unwrap().send(1);
        assert_eq!(rx.recv().now_or_never(), Some(Some(1)));
        let mut recv = Box::pin(rx.recv());
        assert!(recv.as_mut().poll(&mut cx).is_pending());
        tx.try_reserve().unwrap().send(2);
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(recv.as_mut().poll(&mut cx), Poll::Ready(Some(2)));
        drop(recv);
        assert_eq!(rx.recv().now_or_never(), Some(None));
        // A receiver waiting when the sender goes is woken.
        let (tx, mut rx) = pipe::<u32>();
        let mut recv = Box::pin(rx.recv());
        assert!(recv.as_mut().poll(&mut cx).is_pending());
        drop(tx);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
        assert_eq!(recv.as_mut().poll(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn the_sender_sees_the_receiver_go_and_the_items_are_dropped() {
        let item = Arc::new(());
        let (tx, rx) = pipe::<Arc<()>>();
        let (wakes, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..CAPACITY {
            tx.try_reserve().unwrap().send(item.clone());
        }
        let mut reserve = Box::pin(tx.reserve());
        assert!(reserve.as_mut().poll(&mut cx).is_pending());
        assert!(!tx.is_closed());
        drop(rx);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "the waiting sender is woken"
        );
        assert_eq!(Arc::strong_count(&item), 1, "the queued items are dropped");
        assert!(matches!(
            reserve.as_mut().poll(&mut cx),
            Poll::Ready(Err(Closed))
        ));
        drop(reserve);
        assert!(tx.is_closed());
        assert_eq!(tx.try_reserve().unwrap_err(), TryReserveError::Closed);
        let back = tx.send(item.clone()).now_or_never();
        assert!(
            matches!(back, Some(Err(SendError(_)))),
            "the item comes back"
        );
        drop(back);
        assert_eq!(Arc::strong_count(&item), 1);
    }

    #[tokio::test]
    async fn receiving_spends_the_task_budget_and_loses_nothing_when_it_is_spent() {
        let (tx, mut rx) = pipe::<usize>();
        let mut received = 0;
        // An item is always waiting, so only the budget can make `recv` return `Pending`.
        loop {
            assert!(received < 10_000, "receiving never spent the task's budget");
            tx.try_reserve().unwrap().send(received);
            match poll_fn(|cx| Poll::Ready(rx.poll_recv(cx))).await {
                Poll::Ready(item) => {
                    assert_eq!(item, Some(received));
                    received += 1;
                }
                Poll::Pending => break,
            }
        }
        assert!(!coop::has_budget_remaining());
        // Once the task has yielded, the item that waited comes next.
        tokio::task::yield_now().await;
        assert_eq!(rx.recv().await, Some(received));
    }

    #[tokio::test]
    async fn reserving_spends_the_task_budget_and_takes_no_permit_when_it_is_spent() {
        let (tx, _rx) = pipe::<u32>();
        let mut reserved = 0;
        // There is always room, so only the budget can make `reserve` return `Pending`.
        loop {
            assert!(reserved < 10_000, "reserving never spent the task's budget");
            match poll_fn(|cx| Poll::Ready(tx.poll_reserve(cx).map(|p| p.is_ok()))).await {
                Poll::Ready(ok) => {
                    assert!(ok);
                    reserved += 1;
                }
                Poll::Pending => break,
            }
        }
        tokio::task::yield_now().await;
        // The whole capacity is there: the refused reservation took nothing.
        let permits: Vec<_> = (0..CAPACITY).map(|_| tx.try_reserve().unwrap()).collect();
        assert_eq!(permits.len(), CAPACITY);
        assert!(coop::has_budget_remaining());
        assert!(tx.reserve().now_or_never().is_none(), "full now");
    }

    #[tokio::test]
    async fn waiting_spends_no_budget() {
        let (tx, mut rx) = pipe::<u32>();
        // More waits than a task's budget: an empty pipe's `recv` and a full pipe's `reserve`
        // stay `Pending` and leave the budget as it was.
        for _ in 0..1_000 {
            assert!(poll_fn(|cx| Poll::Ready(rx.poll_recv(cx)))
                .await
                .is_pending());
        }
        for i in 0..CAPACITY as u32 {
            tx.try_reserve().unwrap().send(i);
        }
        for _ in 0..1_000 {
            assert!(
                poll_fn(|cx| Poll::Ready(tx.poll_reserve(cx).map(|p| p.is_ok())))
                    .await
                    .is_pending()
            );
        }
        assert!(coop::has_budget_remaining());
        // A closed pipe's `reserve` spends none either.
        drop(rx);
        for _ in 0..1_000 {
            assert!(matches!(
                poll_fn(|cx| Poll::Ready(tx.poll_reserve(cx).map(|p| p.is_err()))).await,
                Poll::Ready(true)
            ));
        }
        assert!(coop::has_budget_remaining());
    }

    #[test]
    fn a_permit_used_after_the_receiver_went_drops_its_item() {
        let item = Arc::new(());
        let (tx, rx) = pipe::<Arc<()>>();
        let permit = tx.try_reserve().unwrap();
        drop(rx);
        permit.send(item.clone());
        assert_eq!(Arc::strong_count(&item), 1);
    }
}
