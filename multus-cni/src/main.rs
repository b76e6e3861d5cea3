//! `multus`: the CNI plugin binary.
//!
//! - Started as `multus` with `CNI_COMMAND` set: the Multus meta-plugin ([`multus_cni::meta`]).
//! - Started under the name of a built-in delegate (`host-local`, `macvlan`, `ipvlan`, ...): that plugin
//!   alone, a drop-in for the reference binary of the same name.
//! - Started as `multus-shim` (or as `multus shim`): the thick plugin's shim ([`multus_cni::shim`]), which
//!   forwards the call to the node's `multus-daemon`.
//! - Started as `multus` without `CNI_COMMAND`: the command line ([`cli`]).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// The C `main` below replaces std's start-up (see `main`); unit tests keep the harness's.
#![cfg_attr(not(test), no_main)]

mod cli;

use multus_cni::{builtins, logging, meta};
use multus_core::cni::{CniError, ErrorCode};
use multus_core::skel::{self, Outcome};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The process entry, called by the C runtime. It skips std's start-up code, which a plugin living a few
/// milliseconds pays for: reading and parsing `/proc/self/maps` to find the main thread's stack, a signal
/// stack and SIGSEGV/SIGBUS handlers to report stack overflows (one is a plain SIGSEGV here). What of it we
/// rely on is done here: SIGPIPE ignored (a write to a closed pipe fails with EPIPE instead of killing us)
/// and file descriptors 0-2 open (else the first files and sockets opened would take their numbers, and
/// the result written to "stdout" would go to one of them). `std::env::args` does not need std's start-up
/// on glibc. `main` ends with `std::process::exit`, which flushes stdout as std's exit path does.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: plain libc calls on constant arguments, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        for fd in 0..3 {
            if libc::fcntl(fd, libc::F_GETFD) == -1
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
            {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                if null != fd {
                    // Could not get `fd` back: stop before anything is written to the wrong file.
                    libc::abort();
                }
            }
        }
    }
    rust_main()
}

#[cfg_attr(test, allow(dead_code))]
fn rust_main() -> ! {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let name = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = std::panic::catch_unwind(|| dispatch(&name)).unwrap_or_else(|_| {
        // A panic is a bug; the runtime still gets a CNI error, never a half-written answer.
        let e = CniError::new(
            ErrorCode::DelegateFailed,
            "multus panicked (a bug: please report it with the log)",
        );
        skel::emit(&Outcome::error(&e, multus_core::cni::CURRENT_VERSION))
    });
    std::process::exit(code);
}

fn dispatch(name: &str) -> i32 {
    if name == "multus-shim" || std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        return multus_cni::shim::main();
    }
    if name != "multus" && builtins::standalone_types().iter().any(|t| t == name) {
        return standalone(name);
    }
    if std::env::var_os("CNI_COMMAND").is_some() {
        return meta_plugin();
    }
    cli::main()
}

/// The meta-plugin process.
fn meta_plugin() -> i32 {
    skel::serve(|env, stdin| async move { meta::run(&env, &stdin).await })
}

/// One built-in delegate as a standalone plugin, a drop-in for the reference binary of that name, tuned for a
/// process that lives a few milliseconds: the namespace's socket made before the runtime starts, logging set
/// up when something is logged, host-local on this thread.
fn standalone(name: &str) -> i32 {
    preopen_netns(name);
    logging::init_lazy(&std::env::var("MULTUS_LOG_LEVEL").unwrap_or_default());
    let mut registry = builtins::registry(Vec::new(), Duration::from_secs(60));
    registry.register(
        "host-local",
        // No thread per call; but a macvlan / ipvlan DEL releases the IP while the kernel deletes the link.
        Arc::new(multus_ipam::cni::HostLocal::new(if name == "host-local" {
            multus_ipam::cni::Work::Inline
        } else {
            multus_ipam::cni::Work::InlineDelOnThread
        })),
    );
    let registry = Arc::new(registry);
    match registry.resolve(name, &[]) {
        Ok(delegate) => skel::main(delegate, registry),
        Err(e) => skel::emit(&Outcome::error(&e, multus_core::cni::CURRENT_VERSION)),
    }
}

/// For a plugin that works inside `CNI_NETNS` (macvlan, ipvlan, bridge: ADD, CHECK, DEL), opens its netlink socket
/// and sysctl directories there now, on this thread before the runtime starts, so that no thread has to
/// enter the namespace later ([`multus_core::netns::preopen`]).
fn preopen_netns(name: &str) {
    if !matches!(name, "macvlan" | "ipvlan" | "bridge") {
        return;
    }
    if !matches!(
        std::env::var("CNI_COMMAND").as_deref(),
        Ok("ADD" | "CHECK" | "DEL")
    ) {
        return;
    }
    let Some(netns) = std::env::var_os("CNI_NETNS").filter(|n| !n.is_empty()) else {
        return;
    };
    if let Err(e) = multus_core::netns::preopen(Path::new(&netns)) {
        // This thread may be in the wrong namespace: stop before doing anything.
        std::process::exit(skel::emit(&Outcome::error(
            &e,
            multus_core::cni::CURRENT_VERSION,
        )));
    }
}
