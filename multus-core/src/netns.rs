//! Network namespaces: opening and checking a `CNI_NETNS` path, and running work inside a namespace on a
//! dedicated thread (never on a tokio worker: `setns` changes only the calling thread).
//!
//! A single-threaded plugin process may instead [`preopen`] what it will need inside the namespace (a
//! netlink socket, the sysctl directories) on its main thread *before* it starts its runtime, and return to
//! its own namespace at once: the connections asked for later in that namespace then need no thread.

use crate::cni::CniError;
use crate::netlink::sysctl::SysctlDirs;
use std::fs::File;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `NSFS_MAGIC` from `linux/magic.h`: the file system of `/proc/<pid>/ns/*` and bind-mounted netns files.
const NSFS_MAGIC: i64 = 0x6e73_6673;
/// `PROC_SUPER_MAGIC`: older kernels report `/proc/<pid>/ns/net` as procfs.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

/// An open network namespace file.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens a netns path and checks that it is a namespace file. A missing or wrong path is code 3
    /// (container unknown or does not exist); a path that cannot be read is code 5. The open never blocks
    /// (`O_NONBLOCK`: a FIFO given as `CNI_NETNS` once hung the plugin until a writer came).
    pub fn open(path: &Path) -> Result<Self, CniError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path);
        let file = file.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CniError::unknown_container(format!(
                "network namespace {} does not exist",
                path.display()
            )),
            _ => CniError::io(format!(
                "cannot open network namespace {}: {e}",
                path.display()
            )),
        })?;
        let st = nix::sys::statfs::fstatfs(file.as_fd()).map_err(|e| {
            CniError::io(format!(
                "cannot stat network namespace {}: {e}",
                path.display()
            ))
        })?;
        #[allow(clippy::unnecessary_cast)]
        let magic = st.filesystem_type().0 as i64;
        if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
            return Err(CniError::unknown_container(format!(
                "{} is not a network namespace (file system type {magic:#x})",
                path.display()
            )));
        }
        Ok(NetNs {
            file,
            path: path.to_path_buf(),
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file (for `setns` or `IFLA_NET_NS_FD`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The namespace's identity: device and inode of its nsfs file (the same for every path to it).
    fn id(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        self.file.metadata().ok().map(|m| (m.dev(), m.ino()))
    }

    /// Runs `f` on a new OS thread that has entered this namespace, and returns its value. The thread ends
    /// afterwards, so no other work ever runs in the wrong namespace.
    pub fn run<T, F>(&self, f: F) -> Result<T, CniError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.start(f, None)?.join_blocking()
    }

    /// Starts `f` on a new OS thread that enters this namespace, and returns at once: the caller goes on
    /// (with netlink requests in its own namespace, say) while the thread starts, and collects `f`'s value
    /// with [`NsThread::join`]. As with [`NetNs::run`], the thread ends after `f`.
    pub fn spawn<T, F>(&self, f: F) -> Result<NsThread<T>, CniError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.start(f, Some(tx))
            .map(|t| NsThread { rx: Some(rx), ..t })
    }

    fn start<T, F>(
        &self,
        f: F,
        tx: Option<tokio::sync::oneshot::Sender<Result<T, CniError>>>,
    ) -> Result<NsThread<T>, CniError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let fd = self
            .file
            .try_clone()
            .map_err(|e| CniError::io(format!("dup netns fd: {e}")))?;
        let path = self.path.clone();
        let body = move || -> Result<T, CniError> {
            // setns(CLONE_NEWNET) changes this thread only; it shares nothing with the caller that would
            // follow it into the namespace (the file system context stays the process's).
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| CniError::kernel(format!("setns into {}: {e}", path.display())))?;
            drop(fd);
            Ok(f())
        };
        let handle = std::thread::Builder::new()
            .name("netns".into())
            // The work is a few syscalls: a small stack keeps the mapping (and what it costs) small.
            .stack_size(NS_THREAD_STACK)
            .spawn(move || match tx {
                Some(tx) => {
                    let _ = tx.send(body());
                    None
                }
                None => Some(body()),
            })
            .map_err(|e| CniError::io(format!("cannot start a thread: {e}")))?;
        Ok(NsThread {
            handle: Some(handle),
            rx: None,
        })
    }
}

/// What [`preopen`] made inside a namespace, kept for the first connection asked for there.
struct Preopened {
    id: (u64, u64),
    socket: OwnedFd,
    sysctl: SysctlDirs,
}

static PREOPENED: Mutex<Option<Preopened>> = Mutex::new(None);

/// Opens, on the calling thread, a route-netlink socket and the sysctl directories ([`SysctlDirs`]) inside
/// the namespace at `path`, and returns the thread to its own namespace before it returns. The next
/// [`Netlink`](crate::netlink::Netlink) connection asked for in that namespace (same namespace, whatever
/// the path) uses them instead of starting a thread.
///
/// Only for a process that has no other work going on yet: call it on the main thread before any runtime
/// or thread starts (the standalone plugin binary does). `Ok(true)`: done; `Ok(false)`: nothing was
/// opened (the namespace is missing, say) and nothing changed, so the usual path will run and report;
/// `Err`: the thread could not return to its own namespace, and the process must stop.
pub fn preopen(path: &Path) -> Result<bool, CniError> {
    let Ok(ns) = NetNs::open(path) else {
        return Ok(false);
    };
    let (Some(id), Ok(own)) = (ns.id(), File::open("/proc/thread-self/ns/net")) else {
        return Ok(false);
    };
    if nix::sched::setns(ns.file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
        return Ok(false);
    }
    // SAFETY: constant arguments; the result is a new descriptor we own, or -1.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    let sysctl = SysctlDirs::open_here();
    nix::sched::setns(own.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        CniError::kernel(format!(
            "cannot return to the plugin's own network namespace after opening {}: {e}",
            path.display()
        ))
    })?;
    if fd < 0 {
        return Ok(false);
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Ok(mut p) = PREOPENED.lock() {
        *p = Some(Preopened { id, socket, sysctl });
        return Ok(true);
    }
    Ok(false)
}

/// Takes what [`preopen`] made, when it was made in `ns`.
pub(crate) fn take_preopened(ns: &NetNs) -> Option<(OwnedFd, SysctlDirs)> {
    let mut p = PREOPENED.lock().ok()?;
    if p.as_ref()?.id != ns.id()? {
        return None;
    }
    p.take().map(|p| (p.socket, p.sysctl))
}

/// Stack of a namespace thread: its closures make a socket, open a few files, write sysctls.
const NS_THREAD_STACK: usize = 256 * 1024;

/// A thread working inside a network namespace ([`NetNs::spawn`]).
#[derive(Debug)]
pub struct NsThread<T> {
    handle: Option<std::thread::JoinHandle<Option<Result<T, CniError>>>>,
    rx: Option<tokio::sync::oneshot::Receiver<Result<T, CniError>>>,
}

fn panicked() -> CniError {
    CniError::kernel("a thread working in a network namespace panicked")
}

impl<T> NsThread<T> {
    /// Waits for the thread's value without blocking the runtime.
    pub async fn join(mut self) -> Result<T, CniError> {
        let rx = self.rx.take();
        let r = match rx {
            Some(rx) => rx.await.map_err(|_| panicked())?,
            None => return self.join_blocking(),
        };
        // The value is sent as the thread's last act: it is ending, and is reaped when the handle drops
        // (a detached thread: nothing waits for it).
        self.handle.take();
        r
    }

    fn join_blocking(mut self) -> Result<T, CniError> {
        let h = self.handle.take().ok_or_else(panicked)?;
        match h.join() {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => Err(panicked()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_netns() {
        assert_eq!(
            NetNs::open(Path::new("/nonexistent/ns"))
                .unwrap_err()
                .code
                .code(),
            3
        );
        assert_eq!(
            NetNs::open(Path::new("/etc/hostname"))
                .unwrap_err()
                .code
                .code(),
            3
        );
        // A FIFO: refused at once, not waited on until someone writes to it.
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(NetNs::open(&fifo).map(|_| ()).unwrap_err()));
        let e = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("opening a FIFO as a netns hung");
        assert_eq!(e.code.code(), 3, "{e}");
        let own = NetNs::open(Path::new("/proc/self/ns/net")).unwrap();
        let v = own.run(|| 41 + 1).unwrap();
        assert_eq!(v, 42);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let t = own.spawn(|| 40 + 3).unwrap();
        assert_eq!(rt.block_on(t.join()).unwrap(), 43);
        let t = own.spawn(|| -> u8 { panic!("in the thread") }).unwrap();
        assert_eq!(rt.block_on(t.join()).unwrap_err().code.code(), 103);
    }

    #[test]
    fn preopen_returns_to_its_namespace_and_hands_over_once() {
        use std::os::unix::fs::MetadataExt;
        let me = || std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let before = me();
        assert!(
            !preopen(Path::new("/etc/hostname")).unwrap(),
            "not a netns: nothing done"
        );
        assert!(preopen(Path::new("/proc/self/ns/net")).unwrap());
        assert_eq!(me(), before, "back in its own namespace");
        let own = NetNs::open(Path::new("/proc/thread-self/ns/net")).unwrap();
        let (_sock, dirs) = take_preopened(&own).expect("same namespace, another path");
        assert!(take_preopened(&own).is_none(), "handed over once");
        // The directories resolve names of the namespace they were opened in.
        assert!(dirs.verify("lo") && dirs.is_verified());
        let fresh = SysctlDirs::open_here();
        assert!(!fresh.verify("cni-no-such-link") && !fresh.is_verified());
    }
}
