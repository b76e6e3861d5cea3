//! Logging through `tracing`: to stderr and/or `logFile`, at `logLevel`, never to stdout (stdout carries the
//! CNI result).

use std::path::Path;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Maps Multus' `logLevel` names (`panic`, `error`, `warning`, `info`/`verbose`, `debug`) to a filter.
pub fn level(name: &str) -> LevelFilter {
    match name.to_ascii_lowercase().as_str() {
        "debug" => LevelFilter::DEBUG,
        "verbose" | "info" => LevelFilter::INFO,
        "warning" | "warn" => LevelFilter::WARN,
        "panic" | "error" | "" => LevelFilter::ERROR,
        _ => LevelFilter::ERROR,
    }
}

/// Installs the global subscriber once. A log file that cannot be opened falls back to stderr alone (and
/// says so there): logging must never make a CNI operation fail.
pub fn init(level_name: &str, log_file: Option<&Path>, to_stderr: bool) {
    let lvl = level(level_name);
    let file = log_file.and_then(|p| {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!(
                    "multus: cannot open logFile {}: {e}; logging to stderr",
                    p.display()
                );
                None
            }
        }
    });
    let builder = tracing_subscriber::fmt()
        .with_max_level(lvl)
        .with_ansi(false)
        .with_target(false);
    let _ = match (file, to_stderr) {
        (Some(f), true) => builder
            .with_writer(std::sync::Mutex::new(f).and(std::io::stderr))
            .try_init(),
        (Some(f), false) => builder.with_writer(std::sync::Mutex::new(f)).try_init(),
        (None, _) => builder.with_writer(std::io::stderr).try_init(),
    };
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
                    .with_target(false)
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
