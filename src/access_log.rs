//! The access log: one line per request, in the same text or JSON shape as every other log
//! line, but without going through `tracing` per request.
//!
//! The proxy worker copies what the line says (its texts and numbers, as a record: no
//! formatting) into a buffer of its thread and appends that to one shared buffer (a short,
//! nearly always uncontended lock). A thread of its own formats what has gathered into lines and
//! writes them to stderr every 20 ms, or sooner once 64 KiB wait, in one system call. A request
//! never waits for stderr: when 4 MiB are already waiting (stderr far slower than the traffic),
//! the line is dropped and counted (`portcullis_log_lines_dropped_total`, with the other log
//! lines' drops). Whether the log is on is `tracing`'s decision (`RUST_LOG`, `log_level`: the
//! target `access` at level info), asked each time the filter is set and kept.

use std::cell::Cell;
use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Records waiting for the writer, in bytes, beyond which lines are dropped.
const MAX_PENDING: usize = 4 << 20;
/// The writer is woken early once this much waits.
const WAKE_AT: usize = 64 << 10;
/// Otherwise it writes what waits this often.
const INTERVAL: Duration = Duration::from_millis(20);

struct Sink {
    /// Records of lines not formatted yet ([`encode`]).
    pending: Mutex<Vec<u8>>,
    /// Held by whoever writes a batch, from taking it until it is written, so that batches
    /// go out in the order they were taken (the writer thread's, then `flush`'s).
    writing: Mutex<()>,
    wake: Condvar,
    json: bool,
    dropped: AtomicU64,
}

static SINK: OnceLock<&'static Sink> = OnceLock::new();

/// Start the writer thread; `json` for JSON lines. Until this is called (and in unit tests,
/// which never call it) access-log lines go through `tracing` like any other.
pub fn start(json: bool) -> std::io::Result<()> {
    if SINK.get().is_some() {
        return Ok(());
    }
    // One sink for the life of the process, shared with its writer thread.
    let sink: &'static Sink = Box::leak(Box::new(Sink {
        pending: Mutex::new(Vec::with_capacity(WAKE_AT * 2)),
        writing: Mutex::new(()),
        wake: Condvar::new(),
        json,
        dropped: AtomicU64::new(0),
    }));
    // Lines go to the sink only once its writer runs: without one they keep going through
    // `tracing`.
    std::thread::Builder::new()
        .name("portcullis-access".into())
        .spawn(move || write_forever(sink))?;
    let _ = SINK.set(sink);
    Ok(())
}

/// Lines dropped so far because too much was waiting.
pub fn dropped() -> u64 {
    SINK.get()
        .map(|s| s.dropped.load(Ordering::Relaxed))
        .unwrap_or(0)
}

/// Write `batch` to stderr; lines it cannot write (stderr closed, or not blocking and full)
/// are counted as dropped.
fn write_batch(sink: &Sink, batch: &[u8]) {
    let mut err = std::io::stderr().lock();
    let mut rest = batch;
    while !rest.is_empty() {
        match err.write(rest) {
            Ok(0) | Err(_) => {
                let lost = rest.iter().filter(|b| **b == b'\n').count();
                sink.dropped.fetch_add(lost as u64, Ordering::Relaxed);
                return;
            }
            Ok(n) => rest = &rest[n..],
        }
    }
}

/// Write what waits now (before the process exits), after the batch the writer thread may be
/// writing; gives up after a second if that one does not finish (stderr stalled).
pub fn flush() {
    let Some(sink) = SINK.get() else { return };
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let _writing = loop {
        match sink.writing.try_lock() {
            Ok(g) => break g,
            Err(std::sync::TryLockError::Poisoned(e)) => break e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(std::sync::TryLockError::WouldBlock) => return,
        }
    };
    let waiting = std::mem::take(&mut *lock(&sink.pending));
    if !waiting.is_empty() {
        let mut text = String::with_capacity(waiting.len() * 2);
        render(sink.json, &waiting, &mut text);
        write_batch(sink, text.as_bytes());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A writer that panicked left whole lines behind: the buffer is still good.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn write_forever(sink: &'static Sink) {
    let mut out: Vec<u8> = Vec::with_capacity(WAKE_AT * 2);
    let mut text = String::with_capacity(WAKE_AT * 2);
    loop {
        let _writing = lock(&sink.writing);
        {
            let mut pending = lock(&sink.pending);
            if pending.len() < WAKE_AT {
                pending = match sink.wake.wait_timeout(pending, INTERVAL) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                };
            }
            std::mem::swap(&mut *pending, &mut out);
        }
        if !out.is_empty() {
            render(sink.json, &out, &mut text);
            // Under stderr's own lock, so the other log lines never land inside these.
            write_batch(sink, text.as_bytes());
            out.clear();
            text.clear();
            if out.capacity() > MAX_PENDING {
                out.shrink_to(WAKE_AT * 2);
            }
            if text.capacity() > MAX_PENDING * 2 {
                text.shrink_to(WAKE_AT * 2);
            }
        }
    }
}

/// One request's access-log line.
pub struct Line<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub duration: Duration,
    pub decision: &'a str,
    /// The reasons behind the decision, written as their codes, comma-separated.
    pub reasons: &'a dyn ReasonCodes,
    pub connect_retries: usize,
    /// Times the request was sent again after its connection failed without an answer.
    pub resends: usize,
    pub error: Option<&'a dyn fmt::Display>,
}

/// Whether access-log lines are wanted: `tracing`'s answer for the target `access` at level
/// info, kept by [`filter_changed`] each time the log filter is set; asked of `tracing` (whose
/// filter is consulted on every call) until then.
pub fn enabled() -> bool {
    match WANTED.load(Ordering::Relaxed) {
        WANTED_YES => true,
        WANTED_NO => false,
        _ => wanted(),
    }
}

/// Works out again whether access-log lines are wanted; called once the log filter is set or
/// replaced (`log_level`).
pub fn filter_changed() {
    let answer = if wanted() { WANTED_YES } else { WANTED_NO };
    WANTED.store(answer, Ordering::Relaxed);
}

fn wanted() -> bool {
    tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// [`enabled`]'s kept answer: not known yet, yes or no.
static WANTED: AtomicU8 = AtomicU8::new(WANTED_UNKNOWN);
const WANTED_UNKNOWN: u8 = 0;
const WANTED_YES: u8 = 1;
const WANTED_NO: u8 = 2;

/// Log `line`, of a request that ended `at` (the caller checked [`enabled`]).
pub fn log(line: &Line<'_>, at: Instant) {
    let Some(sink) = SINK.get() else {
        let error = line.error.map(|e| e.to_string()).unwrap_or_default();
        tracing::info!(
            target: "access",
            request_id = line.request_id,
            method = line.method,
            host = line.host,
            path = line.path,
            route = line.route,
            status = line.status,
            duration_ms = line.duration.as_secs_f64() * 1000.0,
            decision = line.decision,
            reasons = %Codes(line.reasons),
            connect_retries = line.connect_retries,
            resends = line.resends,
            error,
            "request"
        );
        return;
    };
    thread_local! {
        static BUF: RefCell<(Vec<u8>, String)> =
            RefCell::new((Vec::with_capacity(512), String::with_capacity(64)));
    }
    BUF.with_borrow_mut(|(buf, scratch)| {
        buf.clear();
        encode(buf, scratch, since_epoch(at), line);
        let mut pending = lock(&sink.pending);
        let before = pending.len();
        if before + buf.len() > MAX_PENDING {
            drop(pending);
            sink.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        pending.extend_from_slice(buf);
        let after = pending.len();
        drop(pending);
        if before < WAKE_AT && after >= WAKE_AT {
            sink.wake.notify_one();
        }
    });
}

thread_local! {
    /// [`since_epoch`]'s reading of both clocks taken together: monotonic, then the system
    /// clock's (since the Unix epoch).
    static ANCHOR: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// The time of day at `at`, as time since the Unix epoch: the system clock read once a second
/// per thread, and the monotonic clock's reading `at` (which the caller has, having timed the
/// request) counted from there. A change of the system clock shows within a second.
fn since_epoch(at: Instant) -> Duration {
    ANCHOR.with(|anchor| {
        if let Some((mono, wall)) = anchor.get()
            && let Some(since) = at.checked_duration_since(mono)
            && since < Duration::from_secs(1)
        {
            return wall + since;
        }
        let mono = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        anchor.set(Some((mono, wall)));
        match at.checked_duration_since(mono) {
            Some(after) => wall + after,
            None => wall.saturating_sub(mono.duration_since(at)),
        }
    })
}

/// How many texts a record holds: the request id, method, host, path, route, decision, reasons
/// and error.
const TEXTS: usize = 8;
/// A record's length, numbers and text lengths, in bytes: what comes before its texts.
const HEAD: usize = 8 + (8 + 4) * 2 + 2 + 8 * 2 + 1 + 8 * TEXTS;

/// Appends `l`, logged at `now` (since the Unix epoch), to `rec` as a record for [`render`]:
/// its length; the numbers and the length of each text, in this machine's byte order; then
/// the texts one after the other. The reasons and the error are written out here (into
/// `scratch`), since the record cannot borrow them. Nothing is formatted: that is the writer
/// thread's work.
fn encode(rec: &mut Vec<u8>, scratch: &mut String, now: Duration, l: &Line<'_>) {
    scratch.clear();
    l.reasons.push_codes(scratch);
    let reasons = scratch.len();
    if let Some(e) = l.error {
        let _ = write!(scratch, "{e}");
    }
    let (reasons, error) = scratch.split_at(reasons);
    let texts: [&str; TEXTS] = [
        l.request_id,
        l.method,
        l.host,
        l.path,
        l.route,
        l.decision,
        reasons,
        error,
    ];
    // The numbers and lengths are put together on the stack and copied in at once.
    let mut head = [0u8; HEAD];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        head[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    let text_len: usize = texts.iter().map(|t| t.len()).sum();
    put(&((HEAD - 8 + text_len) as u64).to_ne_bytes());
    put(&now.as_secs().to_ne_bytes());
    put(&now.subsec_nanos().to_ne_bytes());
    put(&l.duration.as_secs().to_ne_bytes());
    put(&l.duration.subsec_nanos().to_ne_bytes());
    put(&l.status.to_ne_bytes());
    put(&(l.connect_retries as u64).to_ne_bytes());
    put(&(l.resends as u64).to_ne_bytes());
    put(&[u8::from(l.error.is_some())]);
    for text in texts {
        put(&(text.len() as u64).to_ne_bytes());
    }
    debug_assert_eq!(at, HEAD);
    rec.reserve(HEAD + text_len);
    rec.extend_from_slice(&head);
    for text in texts {
        rec.extend_from_slice(text.as_bytes());
    }
    // A long error is not kept for the thread's life.
    if scratch.capacity() > 4096 {
        *scratch = String::new();
    }
}

/// Reads what [`encode`] wrote.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes().map(u64::from_ne_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes().map(u32::from_ne_bytes)
    }

    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.u64()?).ok()
    }

    fn slice(&mut self) -> Option<&'a [u8]> {
        let len = self.len()?;
        let (head, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(head)
    }

    fn duration(&mut self) -> Option<Duration> {
        let (secs, nanos) = (self.u64()?, self.u32()?);
        (nanos < 1_000_000_000).then(|| Duration::new(secs, nanos))
    }
}

/// Codes [`encode`] wrote out already.
struct Written<'a>(&'a str);

impl ReasonCodes for Written<'_> {
    fn push_codes(&self, out: &mut String) {
        out.push_str(self.0);
    }
}

/// Formats every record of `batch` (records [`encode`] appended) as a line onto `out`, JSON
/// lines when `json`. The buffer only ever holds whole records; should one not read, it and
/// what follows are left out rather than written garbled.
fn render(json: bool, batch: &[u8], out: &mut String) {
    let mut records = Reader(batch);
    while let Some(record) = records.slice() {
        let Some((now, line, reasons, error)) = decode(record) else {
            return;
        };
        let error = error.as_ref().map(|e| e as &dyn fmt::Display);
        let line = Line {
            reasons: &Written(reasons),
            error,
            ..line
        };
        if json {
            json_line(out, now, &line);
        } else {
            text_line(out, now, &line);
        }
    }
}

/// One record: when it was logged, the line (without its reasons and error), the reasons as
/// written and the error, if any.
type Decoded<'a> = (Duration, Line<'a>, &'a str, Option<&'a str>);

fn decode(record: &[u8]) -> Option<Decoded<'_>> {
    let mut r = Reader(record);
    let now = r.duration()?;
    let duration = r.duration()?;
    let status = u16::from_ne_bytes(r.bytes()?);
    let connect_retries = usize::try_from(r.u64()?).ok()?;
    let resends = usize::try_from(r.u64()?).ok()?;
    let [has_error] = r.bytes()?;
    let mut lens = [0usize; TEXTS];
    for len in &mut lens {
        *len = r.len()?;
    }
    // The texts, checked as UTF-8 at once and then split (at boundaries `encode` wrote).
    let mut rest = std::str::from_utf8(r.0).ok()?;
    let mut texts = [""; TEXTS];
    for (text, len) in texts.iter_mut().zip(lens) {
        (*text, rest) = rest.split_at_checked(len)?;
    }
    if !rest.is_empty() {
        return None;
    }
    let [
        request_id,
        method,
        host,
        path,
        route,
        decision,
        reasons,
        error,
    ] = texts;
    let line = Line {
        request_id,
        method,
        host,
        path,
        route,
        status,
        duration,
        decision,
        reasons: &Written(""),
        connect_retries,
        resends,
        error: None,
    };
    Some((now, line, reasons, (has_error != 0).then_some(error)))
}

/// `2026-12-01T10:42:02.124612Z`, the date part computed once a second per thread.
fn timestamp(out: &mut String, now: Duration) {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let secs = now.as_secs();
    SECOND.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            text.clear();
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let s = secs % 86_400;
            let _ = write!(
                text,
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
                s / 3600,
                s / 60 % 60,
                s % 60
            );
        }
        out.push_str(text);
    });
    out.push('.');
    push_padded(out, now.subsec_micros(), 6);
    out.push('Z');
}

/// The proleptic Gregorian date of a day counted from 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The shape of `tracing`'s text lines: `TIME  INFO access: request key=value …`, string
/// fields of our own quoted as `tracing` quotes them.
fn text_line(out: &mut String, now: Duration, l: &Line<'_>) {
    timestamp(out, now);
    out.push_str("  INFO access: request request_id=");
    out.push_str(l.request_id);
    out.push_str(" method=");
    out.push_str(l.method);
    out.push_str(" host=");
    out.push_str(l.host);
    out.push_str(" path=");
    out.push_str(l.path);
    out.push_str(" route=");
    push_debug_str(out, l.route);
    out.push_str(" status=");
    push_int(out, l.status);
    out.push_str(" duration_ms=");
    millis(out, l.duration, true);
    // Decisions are fixed words: quoted as `{:?}` would quote them, without escaping.
    out.push_str(" decision=\"");
    out.push_str(l.decision);
    out.push_str("\" reasons=");
    l.reasons.push_codes(out);
    out.push_str(" connect_retries=");
    push_int(out, l.connect_retries);
    out.push_str(" resends=");
    push_int(out, l.resends);
    out.push_str(" error=");
    match l.error {
        Some(e) => push_debug_str(out, &e.to_string()),
        None => out.push_str("\"\""),
    }
    out.push('\n');
}

/// `n` in decimal (`itoa`, not the formatting machinery).
fn push_int(out: &mut String, n: impl itoa::Integer) {
    out.push_str(itoa::Buffer::new().format(n));
}

/// `n` in `width` decimal digits, zeros in front (`n` has at most `width` digits).
fn push_padded(out: &mut String, n: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n);
    for _ in digits.len()..width {
        out.push('0');
    }
    out.push_str(digits);
}

/// `s` quoted as `{:?}` quotes it; text that needs no escaping (printable ASCII without `"`
/// or `\\`, as route names are) is copied as it is.
fn push_debug_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// `d` in milliseconds, exact to the nanosecond, trailing zeros dropped, written with integers
/// rather than through `f64` (`1.5`, `0.042`; a whole number as `2.0` when `point`, as `{:?}`
/// writes a float, else `2`).
fn millis(out: &mut String, d: Duration, point: bool) {
    // No 128-bit division: `as_millis` only multiplies, and the milliseconds are written as a
    // `u64` whenever they fit (always, for a request).
    let (whole, mut frac) = (d.as_millis(), d.subsec_nanos() % 1_000_000);
    match u64::try_from(whole) {
        Ok(whole) => push_int(out, whole),
        Err(_) => push_int(out, whole),
    }
    if frac == 0 {
        if point {
            out.push_str(".0");
        }
        return;
    }
    let mut digits = 6;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    out.push('.');
    push_padded(out, frac, digits);
}

/// The shape of `tracing`'s JSON lines.
fn json_line(out: &mut String, now: Duration, l: &Line<'_>) {
    out.push_str("{\"timestamp\":\"");
    timestamp(out, now);
    out.push_str("\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"request_id\":");
    json_str(out, l.request_id);
    out.push_str(",\"method\":");
    json_str(out, l.method);
    out.push_str(",\"host\":");
    json_str(out, l.host);
    out.push_str(",\"path\":");
    json_str(out, l.path);
    out.push_str(",\"route\":");
    json_str(out, l.route);
    out.push_str(",\"status\":");
    push_int(out, l.status);
    out.push_str(",\"duration_ms\":");
    millis(out, l.duration, false);
    out.push_str(",\"decision\":");
    json_str(out, l.decision);
    // Reason codes are lower-case words and hyphens: nothing in them needs escaping.
    out.push_str(",\"reasons\":");
    let at = out.len();
    l.reasons.push_codes(out);
    if out[at..]
        .bytes()
        .any(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        let codes = out.split_off(at);
        json_str(out, &codes);
    } else {
        // Codes are words and hyphens: quoted as they are, without a copy.
        out.insert(at, '"');
        out.push('"');
    }
    out.push_str(",\"connect_retries\":");
    push_int(out, l.connect_retries);
    out.push_str(",\"resends\":");
    push_int(out, l.resends);
    out.push_str(",\"error\":");
    json_str(out, &l.error.map(|e| e.to_string()).unwrap_or_default());
    out.push_str("},\"target\":\"access\"}\n");
}

/// The reasons of a line, written straight into it (not through `core::fmt`).
pub trait ReasonCodes {
    /// Appends the codes, comma-separated.
    fn push_codes(&self, out: &mut String);
}

/// [`ReasonCodes`] for `tracing` (the lines written before the writer thread starts).
struct Codes<'a>(&'a dyn ReasonCodes);

impl fmt::Display for Codes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut codes = String::new();
        self.0.push_codes(&mut codes);
        f.write_str(&codes)
    }
}

/// `s` as a JSON string.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(error: Option<&'a dyn fmt::Display>, path: &'a str) -> Line<'a> {
        Line {
            request_id: "r1",
            method: "GET",
            host: "a.test",
            path,
            route: "r",
            status: 200,
            duration: Duration::from_micros(1500),
            decision: "allow",
            reasons: &Fixed(&[]),
            connect_retries: 0,
            resends: 1,
            error,
        }
    }

    #[test]
    fn the_time_of_day_is_the_system_clock_counted_on_by_the_monotonic_one() {
        let at = Instant::now();
        let ours = since_epoch(at);
        let system = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let apart = system.abs_diff(ours);
        assert!(
            apart < Duration::from_millis(100),
            "{apart:?} from the system clock"
        );
        // Within a second of the reading both clocks were read at, times are counted on from
        // it exactly; a second or more away, or before it, the clocks are read again.
        let Some((mono, wall)) = ANCHOR.with(Cell::get) else {
            panic!("no reading was kept");
        };
        let step = Duration::from_millis(300);
        assert_eq!(since_epoch(mono + step), wall + step);
        let much_later = since_epoch(mono + Duration::from_secs(5));
        let apart = much_later.abs_diff(wall + Duration::from_secs(5));
        assert!(
            apart < Duration::from_millis(100),
            "{apart:?} off five seconds"
        );
        let apart = ours.abs_diff(since_epoch(at));
        assert!(
            apart < Duration::from_millis(100),
            "{apart:?} off the first answer"
        );
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut s = String::new();
        // 2026-12-01T10:42:02.124612Z
        timestamp(&mut s, Duration::new(1_796_121_722, 124_612_999));
        assert_eq!(s, "2026-12-01T10:42:02.124612Z");
        let mut s = String::new();
        timestamp(&mut s, Duration::new(951_782_400, 0)); // a leap day
        assert_eq!(s, "2000-02-29T00:00:00.000000Z");
        let mut s = String::new();
        timestamp(&mut s, Duration::ZERO);
        assert_eq!(s, "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn json_lines_parse_and_hold_every_field_escaped() {
        let mut s = String::new();
        let err = "upstream \"x\"\nfailed";
        json_line(
            &mut s,
            Duration::new(0, 0),
            &line(Some(&err), "/a\"b\\c\u{1}"),
        );
        assert!(s.ends_with('\n'));
        let v: serde_json::Value = match serde_json::from_str(s.trim_end()) {
            Ok(v) => v,
            Err(e) => panic!("{e}: {s}"),
        };
        assert_eq!(v["target"], "access");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["fields"]["path"], "/a\"b\\c\u{1}");
        assert_eq!(v["fields"]["error"], err);
        assert_eq!(v["fields"]["status"], 200);
        assert_eq!(v["fields"]["duration_ms"], 1.5);
        assert_eq!(v["fields"]["request_id"], "r1");
        assert_eq!(v["fields"]["connect_retries"], 0);
        assert_eq!(v["fields"]["resends"], 1);
    }

    /// Fixed codes, for the tests.
    struct Fixed(&'static [&'static str]);

    impl ReasonCodes for Fixed {
        fn push_codes(&self, out: &mut String) {
            out.push_str(&self.0.join(","));
        }
    }

    #[test]
    fn reasons_are_written_as_comma_separated_codes() {
        for (codes, written) in [
            (&["claim-ok", "user-ok"][..], "claim-ok,user-ok"),
            // Whatever an implementation writes, a JSON line stays JSON.
            (&["a\"b\\c\n"][..], "a\"b\\c\n"),
        ] {
            let mut l = line(None, "/");
            let fixed = Fixed(codes);
            l.reasons = &fixed;
            let mut text = String::new();
            text_line(&mut text, Duration::new(0, 0), &l);
            assert!(text.contains(&format!(" reasons={written} ")), "{text}");
            let mut json = String::new();
            json_line(&mut json, Duration::new(0, 0), &l);
            let v: serde_json::Value =
                serde_json::from_str(json.trim_end()).unwrap_or_else(|e| panic!("{e}: {json}"));
            assert_eq!(v["fields"]["reasons"], written);
            assert_eq!(Codes(&fixed).to_string(), written);
        }
    }

    #[test]
    fn durations_are_written_in_milliseconds_exactly() {
        let cases = [
            (Duration::from_micros(1500), true, "1.5"),
            (Duration::from_nanos(1_523_456), true, "1.523456"),
            (Duration::from_micros(42), true, "0.042"),
            (Duration::from_nanos(7), false, "0.000007"),
            (Duration::from_millis(2), true, "2.0"),
            (Duration::from_millis(2), false, "2"),
            (Duration::from_secs(31), false, "31000"),
            (Duration::MAX, false, "18446744073709551615999.999999"),
        ];
        for (d, point, want) in cases {
            let mut out = String::new();
            millis(&mut out, d, point);
            assert_eq!(out, want, "{d:?}");
        }
    }

    /// The copy without escaping is taken only where `{:?}` would not escape.
    #[test]
    fn quoted_text_is_quoted_as_debug_quotes_it() {
        for text in [
            "ns/name",
            "",
            "a b~",
            "with \"quotes\"",
            "back\\slash",
            "new\nline",
            "tab\t",
            "\u{7f}",
            "caf\u{e9}",
            "\u{200b}",
        ] {
            let mut out = String::new();
            push_debug_str(&mut out, text);
            assert_eq!(out, format!("{text:?}"));
        }
    }

    /// What the writer thread formats from the records is what formatting each line on the
    /// worker gave, in both shapes.
    #[test]
    fn records_render_as_the_lines_themselves() {
        let err = "upstream \"x\"\nfailed";
        let fixed = Fixed(&["claim-ok", "user-ok"]);
        let mut lines = [
            line(None, "/x"),
            line(Some(&err), "/caf\u{e9}/a\"b\\c\u{1}"),
            line(None, ""),
        ];
        lines[0].reasons = &fixed;
        lines[2].connect_retries = usize::MAX;
        lines[2].duration = Duration::new(u64::MAX, 999_999_999);
        lines[2].route = "";
        let times = [
            Duration::ZERO,
            Duration::new(1_796_121_722, 124_612_999),
            Duration::new(951_782_400, 1),
        ];
        for json in [false, true] {
            let (mut batch, mut scratch, mut want) = (Vec::new(), String::new(), String::new());
            for (l, now) in lines.iter().zip(times) {
                encode(&mut batch, &mut scratch, now, l);
                if json {
                    json_line(&mut want, now, l);
                } else {
                    text_line(&mut want, now, l);
                }
            }
            let mut got = String::new();
            render(json, &batch, &mut got);
            assert_eq!(got, want);
            assert_eq!(got.lines().count(), 3);
        }
    }

    #[test]
    fn a_record_that_does_not_read_ends_the_batch() {
        let (mut batch, mut scratch) = (Vec::new(), String::new());
        for path in ["/a", "/b"] {
            encode(&mut batch, &mut scratch, Duration::ZERO, &line(None, path));
        }
        let whole = batch.len();
        encode(&mut batch, &mut scratch, Duration::ZERO, &line(None, "/c"));
        for cut in [whole + 3, whole + 20, batch.len() - 1] {
            let mut got = String::new();
            render(false, &batch[..cut], &mut got);
            let paths: Vec<_> = got
                .lines()
                .filter_map(|l| l.split(" path=").nth(1)?.split(' ').next())
                .collect();
            assert_eq!(paths, ["/a", "/b"], "cut at {cut}");
        }
        // Text that is not UTF-8 (which no record holds) ends it too.
        let mut bad = batch.clone();
        let at = whole
            + bad[whole..]
                .windows(2)
                .position(|w| w == b"/c")
                .unwrap_or(0);
        bad[at] = 0xff;
        let mut got = String::new();
        render(false, &bad, &mut got);
        assert_eq!(got.lines().count(), 2);
    }

    #[test]
    fn text_lines_look_like_the_other_log_lines() {
        let mut s = String::new();
        text_line(&mut s, Duration::new(0, 0), &line(None, "/x"));
        assert_eq!(
            s,
            "1970-01-01T00:00:00.000000Z  INFO access: request request_id=r1 method=GET host=a.test path=/x route=\"r\" status=200 duration_ms=1.5 decision=\"allow\" reasons= connect_retries=0 resends=1 error=\"\"\n"
        );
    }
}
