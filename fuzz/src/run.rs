//! Running a target: its corpus replayed, then generated inputs for a bounded time on a worker thread
//! watched by the caller (a case that runs past [`CASE_LIMIT`] is a hang: reported with its input). A
//! failing input is minimized, saved under `fuzz/artifacts/<target>/` and shown.

use crate::engine::Generator;
use crate::targets::Target;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest one input may take before the run calls it a hang (the targets parse in microseconds).
pub const CASE_LIMIT: Duration = Duration::from_secs(20);

/// The stack of the worker thread: tokio's default, where the binary's parsers run.
const WORKER_STACK: usize = 2 << 20;

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Corpus files replayed.
    pub replayed: usize,
    /// Generated inputs checked.
    pub cases: u64,
    /// The seed of the generator (`FUZZ_SEED` reproduces the run).
    pub seed: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// An input on which a target panicked, hung or broke its contract.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The target.
    pub target: &'static str,
    /// What went wrong.
    pub why: String,
    /// The (minimized) input.
    pub input: Vec<u8>,
    /// Where it was saved, when it could be.
    pub saved: Option<PathBuf>,
    /// The generator's seed (`None`: a corpus file).
    pub seed: Option<u64>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = String::from_utf8_lossy(&self.input);
        let cut: String = shown.chars().take(600).collect();
        writeln!(f, "fuzz target {}: {}", self.target, self.why)?;
        writeln!(f, "input ({} bytes): {cut:?}", self.input.len())?;
        if let Some(p) = &self.saved {
            writeln!(
                f,
                "saved as {} (replay: cargo run -p multus-fuzz -- replay {} {})",
                p.display(),
                self.target,
                p.display()
            )?;
        }
        if let Some(s) = self.seed {
            write!(f, "seed: FUZZ_SEED={s}")?;
        }
        Ok(())
    }
}

/// The corpus directory of a target: `fuzz/corpus/<target>/`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

/// The seeds of a target's corpus, sorted by file name.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir(target))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

/// Checks one input: the target's verdict, a panic turned into a finding.
pub fn check(target: &Target, input: &[u8]) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| (target.check)(input))) {
        Ok(verdict) => verdict,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            Err(format!("panicked: {msg}"))
        }
    }
}

/// Replays the corpus of `target`: every seed must pass.
pub fn replay_corpus(target: &'static Target) -> Result<usize, Failure> {
    let seeds = corpus(target.name);
    for (path, bytes) in &seeds {
        if let Err(why) = check(target, bytes) {
            return Err(Failure {
                target: target.name,
                why: format!("corpus file {}: {why}", path.display()),
                input: bytes.clone(),
                saved: Some(path.clone()),
                seed: None,
            });
        }
    }
    Ok(seeds.len())
}

/// What the worker shares with the watcher: the input being checked and since when.
type Current = Arc<Mutex<(Vec<u8>, Instant)>>;

/// Replays the corpus, then checks generated inputs for `budget` (seed: `seed`).
pub fn run(target: &'static Target, budget: Duration, seed: u64) -> Result<Report, Failure> {
    let start = Instant::now();
    let replayed = replay_corpus(target)?;
    let seeds: Vec<Vec<u8>> = corpus(target.name).into_iter().map(|(_, b)| b).collect();
    let current: Current = Arc::new(Mutex::new((Vec::new(), Instant::now())));
    let (tx, rx) = mpsc::channel();
    let shared = current.clone();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{}", target.name))
        .stack_size(WORKER_STACK)
        .spawn(move || {
            let mut gen = Generator::new(seed, target.shape, seeds);
            let mut cases = 0u64;
            while start.elapsed() < budget {
                let input = gen.next_input();
                if let Ok(mut c) = shared.lock() {
                    *c = (input.clone(), Instant::now());
                }
                cases += 1;
                if let Err(why) = check(target, &input) {
                    let _ = tx.send(Err((why, input)));
                    return;
                }
            }
            let _ = tx.send(Ok(cases));
        });
    let fail = |why: String, input: Vec<u8>| Failure {
        target: target.name,
        why,
        input,
        saved: None,
        seed: Some(seed),
    };
    if let Err(e) = worker {
        return Err(fail(format!("cannot start the worker: {e}"), Vec::new()));
    }
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(cases)) => {
                return Ok(Report {
                    target: target.name,
                    replayed,
                    cases,
                    seed,
                    elapsed: start.elapsed(),
                })
            }
            Ok(Err((why, input))) => return Err(save(minimize(target, fail(why, input)))),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(fail("the worker died".into(), Vec::new()))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let (input, since) = match current.lock() {
                    Ok(c) => (c.0.clone(), c.1),
                    Err(_) => continue,
                };
                if since.elapsed() > CASE_LIMIT {
                    // The worker is stuck in the target: left behind, the input reported.
                    let why = format!("hung: one input ran for more than {CASE_LIMIT:?}");
                    return Err(save(fail(why, input)));
                }
            }
        }
    }
}

/// Shrinks a failing input (chunks removed while it still fails the same way), within a few seconds.
fn minimize(target: &Target, mut f: Failure) -> Failure {
    let deadline = Instant::now() + Duration::from_secs(5);
    let same = |input: &[u8]| check(target, input).is_err();
    let mut chunk = f.input.len() / 2;
    while chunk > 0 && Instant::now() < deadline {
        let mut i = 0;
        while i + chunk <= f.input.len() && Instant::now() < deadline {
            let mut candidate = f.input.clone();
            candidate.drain(i..i + chunk);
            if same(&candidate) {
                f.input = candidate;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    if let Err(why) = check(target, &f.input) {
        f.why = why;
    }
    f
}

/// Writes the input to `fuzz/artifacts/<target>/<hash>` (kept out of git), for replay.
fn save(mut f: Failure) -> Failure {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join(f.target);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &f.input {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let path = dir.join(format!("{h:016x}"));
    if std::fs::create_dir_all(&dir).is_ok() && std::fs::write(&path, &f.input).is_ok() {
        f.saved = Some(path);
    }
    f
}
