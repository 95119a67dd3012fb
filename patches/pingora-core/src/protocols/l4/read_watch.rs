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

//! Read timeouts kept by one watcher thread instead of a timer for each read.
//!
//! A client session that reads a response with a read timeout used to wrap every read in
//! [pingora_timeout::timeout]: a read that pends registers a timer (a lock, an allocation, a
//! reference count) and drops it again when the data comes, nearly always long before the
//! timer would fire. A [ReadWatch] belongs to the connection instead. Starting a read writes
//! the read's number and its timeout into the watch, ending it clears a flag: plain stores, no
//! lock, no clock read and no future of its own to poll.
//!
//! One thread, started by the first watch, looks at every watch each tick (10 ms while some
//! watched read is under way, 50 ms otherwise). When it sees the same read under way for the
//! read's timeout, it marks the watch fired and shuts the socket down (`shutdown(2)`, both
//! ways), which ends the pending read at once (with no data, or an error). The session then
//! sees the mark and reports the read as timed out, as it did before. A timeout therefore ends
//! the read at least its duration after the read started and at most about 60 ms later; a
//! timer fired up to 10 ms late.
//!
//! The socket is shut down only while the stream that owns it is alive: the watcher holds the
//! watch's lock while it shuts the socket down, and the stream takes the same lock to forget
//! its descriptor before it closes it, so a number that the kernel hands to a new socket is
//! never touched.

use std::os::unix::io::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the watcher looks while some watched read is under way.
const TICK: Duration = Duration::from_millis(10);
/// How often it looks while none is.
const IDLE_TICK: Duration = Duration::from_millis(50);

/// The read watch of one connection; see the [module](self).
#[derive(Debug)]
pub struct ReadWatch {
    slot: Arc<Slot>,
}

#[derive(Debug)]
struct Slot {
    /// The number of reads started so far, times two, plus one while a read is under way.
    /// Only the stream's owner writes it.
    state: AtomicU64,
    /// The timeout of the read under way, in milliseconds.
    timeout_ms: AtomicU64,
    /// Set by the watcher when it cut a read off; the socket is shut down then.
    fired: AtomicBool,
    /// The socket, until its stream forgets it just before closing it.
    fd: Mutex<Option<RawFd>>,
    /// Set with `fd` cleared: the watcher drops the watch.
    closed: AtomicBool,
}

impl ReadWatch {
    /// A watch for the socket `fd`, registered with the watcher (started when it is not yet
    /// running); `None` when the watcher thread cannot be started, and the caller times its
    /// reads itself.
    pub fn new(fd: RawFd) -> Option<Self> {
        let watcher = watcher()?;
        let slot = Slot::new(Some(fd));
        watcher.add(slot.clone());
        Some(ReadWatch { slot })
    }

    /// A read that must end within `timeout` starts.
    #[inline]
    pub fn start(&self, timeout: Duration) {
        let millis = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.slot.timeout_ms.store(millis, Ordering::Relaxed);
        // The next read's number, and under way: the watcher reads the timeout after it sees
        // this (release, acquire).
        let state = self.slot.state.load(Ordering::Relaxed);
        self.slot.state.store((state | 1) + 2, Ordering::Release);
    }

    /// The read started last ended; whether the watcher cut it off for its timeout (the socket
    /// is shut down then, and every later read on it ends at once).
    #[inline]
    pub fn end(&self) -> bool {
        let state = self.slot.state.load(Ordering::Relaxed);
        self.slot.state.store(state & !1, Ordering::Release);
        self.slot.fired.load(Ordering::Acquire)
    }

    /// The stream forgets its socket before closing it: from then on the watcher cannot shut
    /// it down, and drops the watch.
    pub fn forget(&self) {
        let mut fd = self.slot.fd.lock().unwrap_or_else(|e| e.into_inner());
        *fd = None;
        self.slot.closed.store(true, Ordering::Release);
    }
}

impl Slot {
    /// A record with no read yet, for the socket `fd`.
    fn new(fd: Option<RawFd>) -> Arc<Self> {
        Arc::new(Slot {
            state: AtomicU64::new(0),
            timeout_ms: AtomicU64::new(0),
            fired: AtomicBool::new(false),
            fd: Mutex::new(fd),
            closed: AtomicBool::new(false),
        })
    }

    /// Cut the read under way off, if it is still the read `seen` (the state the watcher saw):
    /// mark the watch and shut the socket down, if its stream has not forgotten it.
    fn fire(&self, seen: u64) {
        let fd = self.fd.lock().unwrap_or_else(|e| e.into_inner());
        if self.state.load(Ordering::Acquire) != seen {
            // The read ended (and maybe another started) since the watcher looked.
            return;
        }
        self.fired.store(true, Ordering::Release);
        if let Some(fd) = *fd {
            // SAFETY: `fd` is the stream's open socket: the stream clears it under this lock
            // before the socket is closed. shutdown(2) takes no memory of ours.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }
}

struct Watcher {
    /// Watches registered since the watcher last looked.
    added: Mutex<Vec<Arc<Slot>>>,
    /// Wakes the watcher when it sleeps with no watch at all.
    wake: Condvar,
}

impl Watcher {
    fn add(&self, slot: Arc<Slot>) {
        let mut added = self.added.lock().unwrap_or_else(|e| e.into_inner());
        added.push(slot);
        self.wake.notify_one();
    }

    /// The watcher's loop: each tick, every watch whose read has been under way for its
    /// timeout is cut off.
    fn run(&self) {
        // Each watch with the state it had when the watcher last looked, and since when.
        let mut watched: Vec<(Arc<Slot>, u64, Instant)> = Vec::new();
        loop {
            {
                let mut added = self.added.lock().unwrap_or_else(|e| e.into_inner());
                while watched.is_empty() && added.is_empty() {
                    added = self.wake.wait(added).unwrap_or_else(|e| e.into_inner());
                }
                let now = Instant::now();
                watched.extend(added.drain(..).map(|slot| (slot, 0, now)));
            }
            let reading = look(&mut watched, Instant::now());
            std::thread::sleep(if reading { TICK } else { IDLE_TICK });
        }
    }
}

/// One look at every watch at `now`: the closed ones are dropped, the reads under way for their
/// timeout cut off. Whether any read was under way.
fn look(watched: &mut Vec<(Arc<Slot>, u64, Instant)>, now: Instant) -> bool {
    let mut reading = false;
    watched.retain_mut(|(slot, seen, since)| {
        if slot.closed.load(Ordering::Acquire) {
            return false;
        }
        let state = slot.state.load(Ordering::Acquire);
        if state != *seen {
            // Another read (or none) since the last look: its time counts from now.
            *seen = state;
            *since = now;
        }
        if state & 1 == 1 {
            reading = true;
            let timeout = Duration::from_millis(slot.timeout_ms.load(Ordering::Relaxed));
            if now.saturating_duration_since(*since) >= timeout
                && !slot.fired.load(Ordering::Relaxed)
            {
                slot.fire(state);
            }
        }
        true
    });
    reading
}

/// The watcher, started by the first call; `None` when its thread could not be started (every
/// later call tries again).
fn watcher() -> Option<&'static Watcher> {
    static WATCHER: OnceLock<Watcher> = OnceLock::new();
    static STARTED: AtomicBool = AtomicBool::new(false);
    static STARTING: Mutex<()> = Mutex::new(());
    let watcher = WATCHER.get_or_init(|| Watcher {
        added: Mutex::new(Vec::new()),
        wake: Condvar::new(),
    });
    if STARTED.load(Ordering::Acquire) {
        return Some(watcher);
    }
    let _starting = STARTING.lock().unwrap_or_else(|e| e.into_inner());
    if !STARTED.load(Ordering::Acquire) {
        std::thread::Builder::new()
            .name("pingora-read-watch".into())
            .spawn(move || watcher.run())
            .ok()?;
        STARTED.store(true, Ordering::Release);
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::io::AsRawFd;

    fn slot() -> (Arc<Slot>, ReadWatch) {
        let slot = Slot::new(None);
        (slot.clone(), ReadWatch { slot })
    }

    #[test]
    fn a_read_is_cut_off_only_after_its_timeout_has_passed_under_way() {
        let (slot, watch) = slot();
        let mut watched = vec![(slot.clone(), 0, Instant::now())];
        let t0 = Instant::now();
        watch.start(Duration::from_millis(100));
        assert!(look(&mut watched, t0));
        assert!(look(&mut watched, t0 + Duration::from_millis(99)));
        assert!(
            !slot.fired.load(Ordering::Relaxed),
            "fired before its timeout"
        );
        look(&mut watched, t0 + Duration::from_millis(100));
        assert!(
            slot.fired.load(Ordering::Relaxed),
            "not fired after its timeout"
        );
        assert!(
            watch.end(),
            "the session is not told that its read was cut off"
        );
    }

    #[test]
    fn reads_that_end_in_time_are_never_cut_off_however_long_they_go_on() {
        let (slot, watch) = slot();
        let mut watched = vec![(slot.clone(), 0, Instant::now())];
        let t0 = Instant::now();
        // Twenty reads of 60 ms each with a timeout of 100 ms: 1.2 s in all.
        for i in 0..20u32 {
            let at = t0 + Duration::from_millis(60) * i;
            watch.start(Duration::from_millis(100));
            look(&mut watched, at);
            look(&mut watched, at + Duration::from_millis(59));
            assert!(!watch.end(), "read {i} was cut off");
            look(&mut watched, at + Duration::from_millis(59));
        }
        // And the connection then idle for longer than the timeout: not a read.
        assert!(!look(&mut watched, t0 + Duration::from_secs(5)));
        assert!(!slot.fired.load(Ordering::Relaxed));
    }

    #[test]
    fn a_read_that_ended_since_the_watcher_looked_is_not_cut_off() {
        let (slot, watch) = slot();
        watch.start(Duration::from_millis(100));
        let seen = slot.state.load(Ordering::Relaxed);
        // The watcher decided on `seen`; the read ended, and the next started, before it fired.
        assert!(!watch.end());
        watch.start(Duration::from_millis(100));
        slot.fire(seen);
        assert!(!watch.end(), "the next read was cut off");
        watch.start(Duration::from_millis(100));
        slot.fire(slot.state.load(Ordering::Relaxed));
        assert!(watch.end(), "the read under way was not cut off");
    }

    #[test]
    fn a_forgotten_socket_is_dropped_and_never_shut_down() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let watch = ReadWatch {
            slot: Slot::new(Some(client.as_raw_fd())),
        };
        let mut watched = vec![(watch.slot.clone(), 0, Instant::now())];
        let t0 = Instant::now();
        watch.start(Duration::ZERO);
        watch.forget();
        // The watcher drops the watch without cutting anything off ...
        assert!(!look(&mut watched, t0 + Duration::from_secs(1)));
        assert!(watched.is_empty());
        assert!(!watch.slot.fired.load(Ordering::Relaxed));
        // ... and even a cut-off after the stream forgot its socket leaves the socket alone.
        watch.slot.fire(watch.slot.state.load(Ordering::Relaxed));
        client.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[test]
    fn the_watcher_shuts_a_stalled_socket_down() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let watch = ReadWatch::new(client.as_raw_fd()).expect("the watcher starts");
        // A failure, not a hang, if the watcher never cuts the read off.
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = Instant::now();
        watch.start(Duration::from_millis(200));
        // The server never writes: only the watcher can end this read.
        let mut buf = [0u8; 16];
        let n = client
            .read(&mut buf)
            .expect("the read was not ended in 5 s");
        let took = started.elapsed();
        assert_eq!(n, 0, "the read got data");
        assert!(watch.end(), "the read ended but the watch did not fire");
        assert!(took >= Duration::from_millis(200), "cut off after {took:?}");
        assert!(took < Duration::from_secs(2), "cut off only after {took:?}");
        watch.forget();
    }
}
