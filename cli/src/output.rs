//! What a person sees: sizes, dates, progress bars.

/// `println!` that survives a reader going away: `strata verify A | head` ends
/// quietly with status 2 (the output could not be written) instead of a panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say_line(format_args!($($arg)*))
    };
}
pub(crate) use say;

pub fn say_line(line: std::fmt::Arguments) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{line}") {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("strata: writing to standard output: {e}");
        }
        std::process::exit(2);
    }
}

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `1.5 GiB` style sizes.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The one compression ratio every command shows: the bytes a section (or the
/// archive) gives back when restored or extracted, zeros and holes included,
/// over the bytes it stores. `3.04x`; `-` when nothing is stored.
pub fn ratio(given_back: u64, stored: u64) -> String {
    if stored == 0 {
        return "-".to_string();
    }
    format!("{:.2}x", given_back as f64 / stored as f64)
}

/// `1 entry`, `2,048 entries`.
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", grouped(n), if n == 1 { one } else { many })
}

/// `1,234,567` style counts.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A half-open image byte range as people read it: `bytes 4,096-8,191 (4.0 KiB)`.
pub fn byte_range(range: &std::ops::Range<u64>) -> String {
    format!("bytes {}-{} ({})", grouped(range.start), grouped(range.end - 1), size(range.end - range.start))
}

/// UTC date and time from nanoseconds since the epoch, `2026-11-25 12:00:03 UTC`.
pub fn utc(ns: i64) -> String {
    // Every i64 of nanoseconds is a time jiff holds (1677..2262).
    match jiff::Timestamp::from_nanosecond(i128::from(ns)) {
        Ok(t) => t.to_zoned_datetime(jiff::tz::TimeZone::UTC).strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        Err(_) => format!("{ns} ns after 1970"),
    }
}

/// Local date and time, as `ls -l` and `tar -tv` show it: `2026-11-25
/// 13:00:03` (the system's time zone; UTC where it has none). A time outside
/// the years -9999..9999 that jiff places is shown in UTC, expanded
/// (`+292277026596-12-04T15:30:07Z`).
pub fn local(t: strata_format::files::Timestamp) -> String {
    let zoned = jiff::Timestamp::new(t.secs, t.nsec as i32).map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::system()));
    match zoned {
        Ok(zoned) => zoned.strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => t.to_string(),
    }
}

pub fn uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static PLAIN_PROGRESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The one rule of every command, from `--quiet` and `--progress`.
pub fn configure(quiet: bool, progress: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
    PLAIN_PROGRESS.store(progress, std::sync::atomic::Ordering::Relaxed);
}

/// `--quiet`: no progress and no per-section lines; the summary, warnings and
/// errors stay.
pub fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

/// How often `--progress` prints its plain line.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// Progress for `label`: a bar on stderr when it is a terminal; with
/// `--progress` and no terminal, a plain line every few seconds (for logs);
/// nothing when quiet or `hide`. `total` in bytes, when known. Finish it with
/// `finish_and_clear`.
pub fn bar(label: &str, total: Option<u64>, hide: bool) -> ProgressBar {
    if quiet() || hide {
        return ProgressBar::hidden();
    }
    if !std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
        if PLAIN_PROGRESS.load(std::sync::atomic::Ordering::Relaxed) {
            plain_lines(label.to_string(), bar.clone(), total.is_some());
        }
        return bar;
    }
    let bar = match total {
        Some(total) => {
            ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(with_total())
        }
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{prefix:8} {spinner} {bytes:>10} {bytes_per_sec:>12} {msg}")
                .expect("the template is valid"),
        ),
    };
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A bar with its total: done, total, rate, time left.
fn with_total() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:8} [{bar:24}] {bytes:>10} / {total_bytes:10} {bytes_per_sec:>12} {eta} {msg}")
        .expect("the template is valid")
        .progress_chars("#>-")
}

/// Gives a [`bar`] made without a total the `total` found since (a tree's
/// count): the bar then shows how far it has come and the time left.
pub fn set_total(bar: &ProgressBar, total: u64) {
    bar.set_length(total);
    if !bar.is_hidden() {
        bar.set_style(with_total());
    }
}

/// Whether a [`bar`] would show anything: not quiet, and stderr a terminal or
/// `--progress` given (work done only for a display can be skipped otherwise).
pub fn progress_shown() -> bool {
    !quiet() && (std::io::stderr().is_terminal() || PLAIN_PROGRESS.load(std::sync::atomic::Ordering::Relaxed))
}

/// Prints `bar`'s state as one plain line every [`PLAIN_EVERY`] until it is
/// finished: `extract: 1.2 GiB / 3.4 GiB (35%), 210 MiB/s, 11 s left, 10,432 files`.
fn plain_lines(label: String, bar: ProgressBar, total_known: bool) {
    let line = move |bar: &ProgressBar| {
        let done = bar.position();
        let rate = format!("{}/s", size(bar.per_sec() as u64));
        let message = bar.message();
        let message = if message.is_empty() { String::new() } else { format!(", {message}") };
        match bar.length().filter(|&t| t > 0) {
            Some(total) => format!(
                "{label}: {} / {} ({}%), {rate}, {} s left{message}",
                size(done),
                size(total),
                done * 100 / total,
                bar.eta().as_secs()
            ),
            None => format!("{label}: {}, {rate}{message}", size(done)),
        }
    };
    // The first line says that the work began and how much there is: at once
    // when the total is known (however short the work turns out to be), else
    // a moment later, when a count running beside the work has given it.
    let mut waited = if total_known {
        eprintln!("{}", line(&bar));
        Duration::ZERO
    } else {
        PLAIN_EVERY
    };
    std::thread::spawn(move || {
        while !bar.is_finished() {
            std::thread::sleep(Duration::from_millis(100));
            waited += Duration::from_millis(100);
            if waited < PLAIN_EVERY || bar.is_finished() {
                continue;
            }
            waited = Duration::ZERO;
            eprintln!("{}", line(&bar));
        }
    });
}

/// Waits `interval` for the other end of `stop` to be dropped: whether to go
/// on ticking. A progress thread that sleeps instead makes its command wait
/// out the interval when the work is done (measured: extraction took 1.01 or
/// 1.11 s, depending on where the last 100 ms sleep fell).
pub fn tick_again(stop: &std::sync::mpsc::Receiver<()>, interval: Duration) -> bool {
    matches!(stop.recv_timeout(interval), Err(std::sync::mpsc::RecvTimeoutError::Timeout))
}

/// A thread running a closure every interval until the ticker is dropped,
/// which wakes it at once and waits for its last tick.
pub struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Runs `tick` now and then every `interval` until the ticker is dropped.
    pub fn every(interval: Duration, mut tick: impl FnMut() + Send + 'static) -> Ticker {
        let (stop, stopped) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            tick();
            while tick_again(&stopped, interval) {
                tick();
            }
        });
        Ticker { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prints a JSON value on stdout.
pub fn print_json(value: &serde_json::Value) {
    say!("{}", serde_json::to_string_pretty(value).expect("a Value always serialises"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn a_ticker_ticks_at_once_and_stops_without_waiting_out_its_interval() {
        let ticks = Arc::new(AtomicU32::new(0));
        let counted = ticks.clone();
        let started = Instant::now();
        let ticker = Ticker::every(Duration::from_secs(60), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        // The first tick runs before the first wait.
        while ticks.load(Ordering::SeqCst) == 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "the first tick never ran");
            std::thread::yield_now();
        }
        drop(ticker);
        assert!(started.elapsed() < Duration::from_secs(30), "dropping the ticker waited out its interval");
        assert_eq!(ticks.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn tick_again_is_false_once_the_sender_is_gone_and_true_after_a_quiet_interval() {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        assert!(tick_again(&stopped, Duration::from_millis(1)));
        drop(stop);
        let started = Instant::now();
        assert!(!tick_again(&stopped, Duration::from_secs(60)));
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
