//! Logging through `tracing`: to stderr and/or `logFile`, at `logLevel`, never to stdout (stdout carries the
//! CNI result).
//!
//! Lines look like upstream's (`pkg/logging`): `2026-01-02T15:04:05Z [verbose] Add: ...`, one per event. Levels
//! map as upstream's: `tracing::error!` is `[error]`, `warn!` is `[error] warning: ...` (upstream's `Warningf`,
//! shown from `logLevel: error` on), `info!` is `[verbose]`, `debug!`/`trace!` are `[debug]`. So what the
//! meta-plugin logs with `info!` (an ADD, a DEL) is visible at `logLevel: verbose`, as upstream's `Verbosef`.
//!
//! `logFile` is rotated as upstream's `logOptions` ask, with upstream's (lumberjack's) defaults and meanings
//! ([`LogOptions`]). Every CNI call is its own process and many write one file, so the rotation is done under a
//! lock shared by all of them ([`RotatingFile`]); the renaming, pruning and compressing is the `file-rotate`
//! crate's.

use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::{self, FormatEvent, FormatFields};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Maps Multus' `logLevel` names to a filter: `debug`; `verbose` (or `info`); `error` (or `warning`): errors
/// and warnings, as upstream's `error` level shows its `Warningf` lines; `panic`, empty or unknown: errors
/// only (upstream's `panic` shows nothing but panics, which this implementation reports as errors).
pub fn level(name: &str) -> LevelFilter {
    match name.to_ascii_lowercase().as_str() {
        "debug" => LevelFilter::DEBUG,
        "verbose" | "info" => LevelFilter::INFO,
        "error" | "warning" | "warn" => LevelFilter::WARN,
        _ => LevelFilter::ERROR,
    }
}

/// Upstream's `logOptions`: how `logFile` is rotated. Defaults and meanings are upstream's, which are
/// lumberjack's: the file is rotated before a write would make it larger than `maxSize` MB; rotated files are
/// named after the time of their rotation, kept for `maxAge` days (0: no limit) and at most `maxBackups` of
/// them (0: no limit), and gzipped when `compress`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// `maxSize` in bytes (the key is in megabytes; default 100 MB; 0 means the default, as in lumberjack).
    pub max_size_bytes: u64,
    /// `maxAge` in days (default 5; 0: rotated files are not removed for their age).
    pub max_age_days: u32,
    /// `maxBackups` (default 5; 0: rotated files are not removed for their number).
    pub max_backups: u32,
    /// `compress` (default true): rotated files are gzipped.
    pub compress: bool,
}

const MB: u64 = 1024 * 1024;

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_size_bytes: 100 * MB,
            max_age_days: 5,
            max_backups: 5,
            compress: true,
        }
    }
}

impl LogOptions {
    /// Parses the `logOptions` object of the Multus config (`maxSize`, `maxAge`, `maxBackups`: integers >= 0;
    /// `compress`: a boolean; a missing or null key takes upstream's default). Other keys are ignored, as
    /// upstream's JSON decoding does. An error names the key.
    pub fn parse(m: &Map<String, Value>) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        let int = |k: &str| -> Result<Option<u64>, String> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    format!("logOptions: \"{k}\" must be an integer of 0 or more, not {v}")
                }),
            }
        };
        if let Some(mb) = int("maxSize")? {
            if mb > 0 {
                o.max_size_bytes = mb.saturating_mul(MB);
            }
        }
        if let Some(d) = int("maxAge")? {
            o.max_age_days = u32::try_from(d).unwrap_or(u32::MAX);
        }
        if let Some(n) = int("maxBackups")? {
            o.max_backups = u32::try_from(n).unwrap_or(u32::MAX);
        }
        match m.get("compress") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => o.compress = *b,
            Some(v) => {
                return Err(format!(
                    "logOptions: \"compress\" must be true or false, not {v}"
                ))
            }
        }
        Ok(o)
    }

    /// [`LogOptions::parse`], or upstream's defaults when the object is malformed (said on stderr): logging
    /// must never make a CNI operation fail.
    pub fn from_map_or_default(m: &Map<String, Value>) -> LogOptions {
        LogOptions::parse(m).unwrap_or_else(|e| {
            eprintln!("multus: {e}; rotating logFile with the defaults");
            LogOptions::default()
        })
    }
}

/// Installs the global subscriber once, rotating `log_file` with upstream's default `logOptions`. A log file
/// that cannot be opened falls back to stderr alone (and says so there): logging must never make a CNI
/// operation fail.
pub fn init(level_name: &str, log_file: Option<&Path>, to_stderr: bool) {
    init_with_options(level_name, log_file, to_stderr, &LogOptions::default())
}

/// [`init`] with the Multus config's `logOptions` (see [`LogOptions::parse`]).
pub fn init_with_options(
    level_name: &str,
    log_file: Option<&Path>,
    to_stderr: bool,
    options: &LogOptions,
) {
    let lvl = level(level_name);
    let file = log_file.and_then(|p| match RotatingFile::open(p, options.clone()) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!(
                "multus: cannot open logFile {}: {e}; logging to stderr",
                p.display()
            );
            None
        }
    });
    let builder = tracing_subscriber::fmt()
        .with_max_level(lvl)
        .with_ansi(false)
        .event_format(UpstreamFormat);
    let _ = match (file, to_stderr) {
        (Some(f), true) => builder.with_writer(f.and(io::stderr)).try_init(),
        (Some(f), false) => builder.with_writer(f).try_init(),
        (None, _) => builder.with_writer(io::stderr).try_init(),
    };
}

/// Upstream's `[verbose]` line for one network attached (`pkg/multus` `DelegateAdd`):
/// `Add: <namespace>:<pod>:<pod UID>:<network>(<config name>):<ifname> <result JSON>` (pod fields empty in
/// the kubeconfig-less mode). The meta-plugin logs it with `tracing::info!("{}", ..)`.
pub fn add_line(
    namespace: &str,
    pod: &str,
    uid: &str,
    network: &str,
    conf_name: &str,
    ifname: &str,
    result_json: &str,
) -> String {
    format!("Add: {namespace}:{pod}:{uid}:{network}({conf_name}):{ifname} {result_json}")
}

/// Upstream's `[verbose]` line for one network deleted (`pkg/multus` `DelegateDel`):
/// `Del: <namespace>:<pod>:<pod UID>:<config name>:<ifname> <delegate config JSON>`.
pub fn del_line(
    namespace: &str,
    pod: &str,
    uid: &str,
    conf_name: &str,
    ifname: &str,
    conf_json: &str,
) -> String {
    format!("Del: {namespace}:{pod}:{uid}:{conf_name}:{ifname} {conf_json}")
}

/// Upstream's line format: `<RFC 3339 time, UTC> [<level>] <message> <fields>`.
pub struct UpstreamFormat;

impl<S, N> FormatEvent<S, N> for UpstreamFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let (tag, prefix) = match *event.metadata().level() {
            tracing::Level::ERROR => ("error", ""),
            tracing::Level::WARN => ("error", "warning: "),
            tracing::Level::INFO => ("verbose", ""),
            _ => ("debug", ""),
        };
        write!(
            writer,
            "{} [{tag}] {prefix}",
            multus_core::time::rfc3339_utc(std::time::SystemTime::now())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// How long a writer waits for the rotation lock before it writes without it (a stuck process must not
/// stall every CNI call of the node).
const LOCK_BOUND: Duration = Duration::from_secs(5);

/// A log file that many processes append to and rotate, safely.
///
/// Each event is one `write(2)` on an `O_APPEND` descriptor, so lines of concurrent processes never
/// interleave. A writer holds an `flock` on the sidecar `.<name>.lock` (beside the log file) while it checks
/// that its descriptor is still the file at `path` (else it reopens it: another process rotated it), looks at
/// the size, rotates when the event would not fit (`file-rotate` renames, prunes and compresses), and writes.
/// So a file is rotated once when it is full, by whichever process comes first (the next one sees the new,
/// empty file), nobody writes into a file being compressed, and no file grows past `maxSize` (unless one
/// event alone is larger). The lock is held for microseconds, except during a rotation with compression
/// (about a second per 100 MB; BENCHMARKS.md); a writer that cannot have it within 5 s writes without it.
/// A process pays, per call, two opens, and per line one `flock` pair, one `stat` and one `fstat`.
#[derive(Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    path: PathBuf,
    lock: File,
    file: File,
    options: LogOptions,
}

impl RotatingFile {
    /// Opens (creating) `path` and its lock file.
    pub fn open(path: &Path, options: LogOptions) -> io::Result<RotatingFile> {
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir()?.join(path)
        };
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(d), Some(n)) => (d.to_path_buf(), n.to_string_lossy().into_owned()),
            _ => return Err(io::Error::other("not a file path")),
        };
        std::fs::create_dir_all(&dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.join(format!(".{name}.lock")))?;
        let file = open_append(&path)?;
        Ok(RotatingFile {
            inner: Arc::new(Mutex::new(Inner {
                path,
                lock,
                file,
                options,
            })),
        })
    }

    /// Appends `buf` (one or more whole lines) in one write, rotating first when it would not fit.
    pub fn append(&self, buf: &[u8]) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.append(buf)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .open(path)
}

/// Takes `lock` within [`LOCK_BOUND`]; false when it could not.
fn lock_bounded(lock: &File) -> bool {
    let start = Instant::now();
    let mut pause = Duration::from_micros(50);
    loop {
        match lock.try_lock() {
            Ok(()) => return true,
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_BOUND => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(10));
            }
            Err(_) => return false,
        }
    }
}

impl Inner {
    /// Reopens the file when `path` is no longer the file we hold (rotated by another process); returns
    /// the size of the file at `path`.
    fn current_size(&mut self) -> io::Result<u64> {
        let held = self.file.metadata()?;
        match std::fs::metadata(&self.path) {
            Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => Ok(held.len()),
            _ => {
                self.file = open_append(&self.path)?;
                Ok(self.file.metadata()?.len())
            }
        }
    }

    fn append(&mut self, buf: &[u8]) -> io::Result<()> {
        let locked = lock_bounded(&self.lock);
        let r = self.append_locked(buf, locked);
        if locked {
            let _ = self.lock.unlock();
        }
        r
    }

    fn append_locked(&mut self, buf: &[u8], locked: bool) -> io::Result<()> {
        let size = self.current_size()?;
        if locked && size > 0 && size + buf.len() as u64 > self.options.max_size_bytes {
            self.rotate();
        }
        self.file.write_all(buf)
    }

    /// Rotates the file at `path` (the exclusive lock held). A failure is said on stderr and the line is
    /// written to the file as it is: logging never fails the call.
    fn rotate(&mut self) {
        let path = self.path.clone();
        let options = self.options.clone();
        let done = std::panic::catch_unwind(move || -> io::Result<()> {
            let mut rotator = file_rotate::FileRotate::new(
                &path,
                Backups::new(&options),
                file_rotate::ContentLimit::None,
                if options.compress {
                    file_rotate::compression::Compression::OnRotate(0)
                } else {
                    file_rotate::compression::Compression::None
                },
                None,
            );
            rotator.rotate()
        });
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("multus: cannot rotate {}: {e}", self.path.display()),
            Err(_) => eprintln!("multus: cannot rotate {}", self.path.display()),
        }
        if let Ok(f) = open_append(&self.path) {
            self.file = f;
        }
    }
}

/// The names and pruning of rotated files: `<logFile>.<local time of rotation>[.N][.gz]`, removed when older
/// than `maxAge` days or beyond the `maxBackups` newest (lumberjack applies both limits; `file-rotate`'s own
/// timestamp scheme applies one, so this scheme asks it twice).
struct Backups {
    by_count: file_rotate::suffix::AppendTimestamp,
    by_age: Option<file_rotate::suffix::AppendTimestamp>,
}

/// Rotated files' time format (no `.`: `file-rotate` separates a collision number with one).
const BACKUP_TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S";

impl Backups {
    fn new(o: &LogOptions) -> Self {
        use file_rotate::suffix::{AppendTimestamp, DateFrom, FileLimit};
        let count = match o.max_backups {
            0 => FileLimit::Unlimited,
            n => FileLimit::MaxFiles(n as usize),
        };
        Backups {
            by_count: AppendTimestamp::with_format(BACKUP_TIME_FORMAT, count, DateFrom::Now),
            by_age: (o.max_age_days > 0).then(|| {
                AppendTimestamp::with_format(
                    BACKUP_TIME_FORMAT,
                    FileLimit::Age(chrono::Duration::days(i64::from(o.max_age_days))),
                    DateFrom::Now,
                )
            }),
        }
    }
}

impl file_rotate::suffix::SuffixScheme for Backups {
    type Repr = file_rotate::suffix::TimestampSuffix;

    fn rotate_file(
        &mut self,
        basepath: &Path,
        newest_suffix: Option<&Self::Repr>,
        suffix: &Option<Self::Repr>,
    ) -> io::Result<Self::Repr> {
        self.by_count.rotate_file(basepath, newest_suffix, suffix)
    }

    fn parse(&self, suffix: &str) -> Option<Self::Repr> {
        self.by_count.parse(suffix)
    }

    fn too_old(&self, suffix: &Self::Repr, file_number: usize) -> bool {
        self.by_count.too_old(suffix, file_number)
            || self
                .by_age
                .as_ref()
                .is_some_and(|a| a.too_old(suffix, file_number))
    }
}

/// One event's writer: the whole formatted event goes out in [`RotatingFile::append`].
pub struct EventWriter(RotatingFile);

impl Write for EventWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = EventWriter;

    fn make_writer(&'a self) -> Self::Writer {
        EventWriter(self.clone())
    }
}

/// Installs the global subscriber for `level_name` writing to stderr, lazily: the formatting subscriber of
/// [`init`] is only built when the first event (or span) at that level comes, which at the default level
/// (errors only) is usually never. A standalone plugin lives a few milliseconds and logs nothing when all
/// goes well: building the subscriber up front costs about 30,000 instructions and 0.1 MiB of RSS.
/// What is logged, and how it looks, is the same as with [`init`] (including `log` records of dependencies,
/// bridged at the same level).
pub fn init_lazy(level_name: &str) {
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = Lazy {
        level: level(level_name),
        inner: std::sync::OnceLock::new(),
    }
    .try_init();
}

/// A subscriber that answers "is this enabled?" from the level alone, and hands everything else to a
/// formatting subscriber it builds on first use.
struct Lazy {
    level: LevelFilter,
    inner: std::sync::OnceLock<tracing::Dispatch>,
}

impl Lazy {
    fn inner(&self) -> &tracing::Dispatch {
        self.inner.get_or_init(|| {
            tracing::Dispatch::new(
                tracing_subscriber::fmt()
                    .with_max_level(self.level)
                    .with_ansi(false)
                    .event_format(UpstreamFormat)
                    .with_writer(std::io::stderr)
                    .finish(),
            )
        })
    }
}

impl tracing::Subscriber for Lazy {
    fn register_callsite(
        &self,
        meta: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        if self.enabled(meta) {
            tracing::subscriber::Interest::always()
        } else {
            tracing::subscriber::Interest::never()
        }
    }

    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= self.level
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.level)
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.inner().new_span(span)
    }

    fn record(&self, span: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        self.inner().record(span, values)
    }

    fn record_follows_from(&self, span: &tracing::span::Id, follows: &tracing::span::Id) {
        self.inner().record_follows_from(span, follows)
    }

    fn event(&self, event: &tracing::Event<'_>) {
        self.inner().event(event)
    }

    fn enter(&self, span: &tracing::span::Id) {
        self.inner().enter(span)
    }

    fn exit(&self, span: &tracing::span::Id) {
        self.inner().exit(span)
    }

    fn clone_span(&self, id: &tracing::span::Id) -> tracing::span::Id {
        self.inner().clone_span(id)
    }

    fn try_close(&self, id: tracing::span::Id) -> bool {
        self.inner().try_close(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_options_have_upstreams_defaults_and_meanings() {
        let parse = |j: &str| {
            LogOptions::parse(
                serde_json::from_str::<Value>(j)
                    .unwrap()
                    .as_object()
                    .unwrap(),
            )
        };
        assert_eq!(parse("{}").unwrap(), LogOptions::default());
        assert_eq!(
            LogOptions::default(),
            LogOptions {
                max_size_bytes: 100 * MB,
                max_age_days: 5,
                max_backups: 5,
                compress: true
            }
        );
        assert_eq!(
            parse(r#"{"maxSize":2,"maxAge":0,"maxBackups":0,"compress":false,"other":1}"#).unwrap(),
            LogOptions {
                max_size_bytes: 2 * MB,
                max_age_days: 0,
                max_backups: 0,
                compress: false
            }
        );
        // lumberjack: a maxSize of 0 is the default size.
        assert_eq!(parse(r#"{"maxSize":0}"#).unwrap().max_size_bytes, 100 * MB);
        assert_eq!(parse(r#"{"maxAge":null}"#).unwrap().max_age_days, 5);
        for (bad, key) in [
            (r#"{"maxSize":-1}"#, "maxSize"),
            (r#"{"maxAge":"5"}"#, "maxAge"),
            (r#"{"maxBackups":1.5}"#, "maxBackups"),
            (r#"{"compress":"yes"}"#, "compress"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(key), "{e}");
        }
        let bad = serde_json::json!({"maxSize": "x"});
        assert_eq!(
            LogOptions::from_map_or_default(bad.as_object().unwrap()),
            LogOptions::default()
        );
    }

    #[test]
    fn levels_are_upstreams() {
        assert_eq!(level("verbose"), LevelFilter::INFO);
        assert_eq!(level("VERBOSE"), LevelFilter::INFO);
        assert_eq!(level("debug"), LevelFilter::DEBUG);
        // Upstream's Warningf prints at its error level.
        assert_eq!(level("error"), LevelFilter::WARN);
        assert_eq!(level("panic"), LevelFilter::ERROR);
        assert_eq!(level(""), LevelFilter::ERROR);
    }

    #[test]
    fn lines_look_like_upstreams() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("multus.log");
        let f = RotatingFile::open(&path, LogOptions::default()).unwrap();
        let sub = tracing_subscriber::fmt()
            .with_max_level(level("verbose"))
            .with_ansi(false)
            .event_format(UpstreamFormat)
            .with_writer(f)
            .finish();
        tracing::subscriber::with_default(sub, || {
            tracing::info!(
                container = "c1",
                "{}",
                add_line("default", "pod", "uid", "net", "conf", "net1", "{}")
            );
            tracing::warn!("slow API");
            tracing::error!("failed");
            tracing::debug!("not shown at verbose");
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let rest = |l: &str| l.split_once(' ').unwrap().1.to_string();
        assert!(
            lines[0].as_bytes()[10] == b'T' && lines[0].contains("Z ["),
            "{text}"
        );
        assert_eq!(
            rest(lines[0]),
            "[verbose] Add: default:pod:uid:net(conf):net1 {} container=\"c1\""
        );
        assert_eq!(rest(lines[1]), "[error] warning: slow API");
        assert_eq!(rest(lines[2]), "[error] failed");
    }

    fn backups(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("multus.log."))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotates_before_a_line_would_not_fit_and_prunes_by_count_and_age() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("multus.log");
        // Rotated files older than maxAge (named by their time) and beyond maxBackups go.
        std::fs::write(d.path().join("multus.log.2001-01-01T00-00-00.gz"), b"old").unwrap();
        let opts = LogOptions {
            max_size_bytes: 100,
            max_age_days: 30,
            max_backups: 2,
            compress: false,
        };
        let f = RotatingFile::open(&path, opts).unwrap();
        let line = [b'x'; 39];
        let mut line = line.to_vec();
        line.push(b'\n');
        f.append(&line).unwrap();
        f.append(&line).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 80);
        assert!(backups(d.path()).len() == 1, "nothing rotated yet");
        f.append(&line).unwrap();
        // 120 > 100: rotated first; whole lines only.
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 40);
        let b = backups(d.path());
        assert_eq!(b.len(), 1, "the 2001 file is older than 30 days: {b:?}");
        assert_eq!(std::fs::read(d.path().join(&b[0])).unwrap().len(), 80);
        for _ in 0..8 {
            f.append(&line).unwrap();
        }
        let b = backups(d.path());
        assert_eq!(b.len(), 2, "maxBackups: {b:?}");
        for n in &b {
            let len = std::fs::read(d.path().join(n)).unwrap().len();
            assert_eq!(len, 80, "{n}");
        }
        // Two rotations within a second get distinct names.
        assert!(
            b[1].ends_with(".1") || b[1].ends_with(".2") || b[0] != b[1],
            "{b:?}"
        );
        // A single line larger than maxSize is still written whole.
        f.append(&[b'y'; 300]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 300);
    }

    #[test]
    fn compressed_backups_are_gzip() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("multus.log");
        let f = RotatingFile::open(
            &path,
            LogOptions {
                max_size_bytes: 64,
                max_age_days: 0,
                max_backups: 0,
                compress: true,
            },
        )
        .unwrap();
        for i in 0..10 {
            f.append(format!("line {i:02} {}\n", "z".repeat(20)).as_bytes())
                .unwrap();
        }
        let b = backups(d.path());
        assert_eq!(b.len(), 4, "{b:?}");
        assert!(b.iter().all(|n| n.ends_with(".gz")), "{b:?}");
        let mut all = String::new();
        for n in &b {
            let out = std::process::Command::new("gzip")
                .arg("-dc")
                .arg(d.path().join(n))
                .output()
                .unwrap();
            assert!(out.status.success());
            all.push_str(&String::from_utf8(out.stdout).unwrap());
        }
        all.push_str(&std::fs::read_to_string(&path).unwrap());
        // Every line once, whole (rotated files sort by name only up to their collision number).
        let mut numbers: Vec<&str> = all.lines().map(|l| &l[5..7]).collect();
        numbers.sort();
        assert_eq!(
            numbers,
            (0..10).map(|i| format!("{i:02}")).collect::<Vec<_>>()
        );
        assert!(all.lines().all(|l| l.len() == 28), "{all}");
    }

    #[test]
    fn lazy_builds_nothing_until_an_enabled_event() {
        let lazy = Lazy {
            level: level(""),
            inner: std::sync::OnceLock::new(),
        };
        tracing::subscriber::with_default(lazy, || {
            tracing::debug!("filtered out");
            tracing::warn!("filtered out too");
            tracing::dispatcher::get_default(|d| {
                let l = d.downcast_ref::<Lazy>().unwrap();
                assert!(l.inner.get().is_none(), "not built for disabled events");
            });
            tracing::error!("this one is written");
            tracing::dispatcher::get_default(|d| {
                assert!(d.downcast_ref::<Lazy>().unwrap().inner.get().is_some());
            });
        });
    }
}
