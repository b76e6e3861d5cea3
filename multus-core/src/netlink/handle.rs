//! A netlink connection bound to one network namespace.

use super::NlError;
use crate::cni::CniError;
use crate::netlink::sysctl::SysctlDirs;
use crate::netns::{NetNs, NsThread};
use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, AsyncSocket, TokioSocket};
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::time::Duration;

/// The bound on every netlink request's answer: a kernel that does not answer within it (a wedged driver
/// holding the RTNL lock, say) fails the request with `ETIMEDOUT` instead of hanging the plugin.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A route-netlink connection whose socket was created in a given network namespace. The connection task
/// runs on the current tokio runtime (which needs its time driver: every request is bounded by
/// [`REQUEST_TIMEOUT`]) and stops when the handle is dropped.
pub struct Netlink {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn runtime() -> Result<tokio::runtime::Handle, CniError> {
    tokio::runtime::Handle::try_current()
        .map_err(|e| CniError::kernel(format!("netlink needs a tokio runtime: {e}")))
}

/// A connection being opened inside a namespace ([`Netlink::open_in_background`]).
pub struct PendingNetlink<T> {
    source: Source<T>,
    path: std::path::PathBuf,
}

enum Source<T> {
    /// A thread is entering the namespace to make the socket.
    Thread(NsThread<(std::io::Result<TokioSocket>, T)>),
    /// The socket was made beforehand ([`crate::netns::preopen`]).
    Ready(OwnedFd, T),
}

/// Registers a socket made elsewhere with the current runtime.
fn tokio_socket(fd: OwnedFd) -> std::io::Result<TokioSocket> {
    // `TokioSocket::from_raw_fd` panics when the runtime refuses the descriptor (it cannot fail otherwise:
    // a runtime is running, see `runtime()`); keep that a plain error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: `fd` is an open netlink socket we own; ownership passes to the TokioSocket.
        unsafe { TokioSocket::from_raw_fd(fd.into_raw_fd()) }
    }))
    .map_err(|_| std::io::Error::other("cannot register the netlink socket with the runtime"))
}

impl<T> std::fmt::Debug for PendingNetlink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingNetlink")
            .field("netns", &self.path)
            .finish_non_exhaustive()
    }
}

impl<T> PendingNetlink<T> {
    /// Waits for the thread (without blocking the runtime) and returns the connection, with the value of
    /// the thread's extra work.
    pub async fn wait(self) -> Result<(Netlink, T), CniError> {
        let (sock, extra) = match self.source {
            Source::Thread(t) => t.join().await?,
            Source::Ready(fd, extra) => (tokio_socket(fd), extra),
        };
        let sock = sock.map_err(|e| Netlink::socket_error(&self.path, e))?;
        Ok((Netlink::from_socket(sock), extra))
    }
}

impl Netlink {
    /// A connection in the namespace of the calling thread: the host namespace, since this process never
    /// changes the namespace of its own runtime threads.
    pub fn current() -> Result<Self, CniError> {
        runtime()?;
        let sock = TokioSocket::new(NETLINK_ROUTE)
            .map_err(|e| CniError::kernel(format!("cannot open a netlink socket: {e}")))?;
        Ok(Self::from_socket(sock))
    }

    /// A connection inside `ns`: a throwaway thread enters the namespace, creates the socket (registering it
    /// with this runtime's reactor) and exits; the socket keeps its namespace.
    pub fn open_in(ns: &NetNs) -> Result<Self, CniError> {
        let rt = runtime()?;
        if let Some((fd, _)) = crate::netns::take_preopened(ns) {
            let sock = tokio_socket(fd).map_err(|e| Self::socket_error(ns.path(), e))?;
            return Ok(Self::from_socket(sock));
        }
        let sock = ns.run(move || {
            let _guard = rt.enter();
            TokioSocket::new(NETLINK_ROUTE)
        })?;
        let sock = sock.map_err(|e| Self::socket_error(ns.path(), e))?;
        Ok(Self::from_socket(sock))
    }

    /// Starts opening a connection inside `ns` and returns at once: a thread enters the namespace, creates
    /// the socket and exits, while the caller goes on (with requests in its own namespace, say);
    /// [`PendingNetlink::wait`] collects the connection.
    pub fn open_in_background(ns: &NetNs) -> Result<PendingNetlink<()>, CniError> {
        if let Some((fd, _)) = crate::netns::take_preopened(ns) {
            runtime()?;
            return Ok(PendingNetlink {
                source: Source::Ready(fd, ()),
                path: ns.path().to_path_buf(),
            });
        }
        Self::open_in_background_with(ns, || ())
    }

    /// As [`Netlink::open_in_background`], with the namespace's sysctl directories ([`SysctlDirs`]) when
    /// `sysctl` is true.
    pub fn open_in_background_with_sysctl(
        ns: &NetNs,
        sysctl: bool,
    ) -> Result<PendingNetlink<Option<SysctlDirs>>, CniError> {
        if let Some((fd, dirs)) = crate::netns::take_preopened(ns) {
            runtime()?;
            return Ok(PendingNetlink {
                source: Source::Ready(fd, sysctl.then_some(dirs)),
                path: ns.path().to_path_buf(),
            });
        }
        Self::open_in_background_with(ns, move || sysctl.then(SysctlDirs::open_here))
    }

    /// As [`Netlink::open_in_background`], and the same thread also runs `also` inside the namespace
    /// (opening its sysctl directories, say); its value comes back with the connection.
    pub fn open_in_background_with<T, F>(ns: &NetNs, also: F) -> Result<PendingNetlink<T>, CniError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let rt = runtime()?;
        let thread = ns.spawn(move || {
            let sock = {
                let _guard = rt.enter();
                TokioSocket::new(NETLINK_ROUTE)
            };
            (sock, also())
        })?;
        Ok(PendingNetlink {
            source: Source::Thread(thread),
            path: ns.path().to_path_buf(),
        })
    }

    /// A connection in `ns`, or in the calling thread's namespace when `ns` is `None`.
    pub fn open(ns: Option<&NetNs>) -> Result<Self, CniError> {
        match ns {
            Some(ns) => Self::open_in(ns),
            None => Self::current(),
        }
    }

    fn socket_error(ns: &std::path::Path, e: std::io::Error) -> CniError {
        CniError::kernel(format!(
            "cannot open a netlink socket in {}: {e}",
            ns.display()
        ))
    }

    fn from_socket(sock: TokioSocket) -> Self {
        let (conn, handle, _) = rtnetlink::from_socket(sock);
        let task = tokio::spawn(conn);
        Netlink { handle, task }
    }

    /// The underlying `rtnetlink` handle, for requests not wrapped here.
    pub fn handle(&self) -> &rtnetlink::Handle {
        &self.handle
    }

    /// Sends one request with `flags` (`NLM_F_REQUEST | NLM_F_ACK` are added) and collects the messages of
    /// the answer; a kernel error becomes an [`NlError`] with its errno.
    pub async fn request(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        self.queue(msg, flags).await
    }

    /// As [`Netlink::request`], but the request is queued at once and the returned future only collects the
    /// answer: several requests queued one after the other go to the kernel back to back, in that order
    /// (the kernel carries each out before it reads the next), and their answers are awaited afterwards.
    pub fn queue(
        &self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> impl std::future::Future<Output = Result<Vec<RouteNetlinkMessage>, NlError>> + Send + 'static
    {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        collect(self.handle.clone().request(req))
    }

    /// A dump request (`NLM_F_DUMP`): every object of the kind asked for.
    pub async fn dump(
        &self,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        collect(self.handle.clone().request(req)).await
    }
}

/// Collects the answer of one request, within [`REQUEST_TIMEOUT`].
async fn collect<S>(resp: Result<S, rtnetlink::Error>) -> Result<Vec<RouteNetlinkMessage>, NlError>
where
    S: futures::Stream<Item = NetlinkMessage<RouteNetlinkMessage>> + Unpin,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, collect_unbounded(resp)).await {
        Ok(r) => r,
        Err(_) => Err(NlError::new(
            Some(libc::ETIMEDOUT),
            format!("no answer from the kernel within {REQUEST_TIMEOUT:?}"),
        )),
    }
}

async fn collect_unbounded<S>(
    resp: Result<S, rtnetlink::Error>,
) -> Result<Vec<RouteNetlinkMessage>, NlError>
where
    S: futures::Stream<Item = NetlinkMessage<RouteNetlinkMessage>> + Unpin,
{
    let mut resp =
        resp.map_err(|e| NlError::new(None, format!("netlink request not sent: {e}")))?;
    let mut out = Vec::new();
    while let Some(m) = resp.next().await {
        match m.payload {
            NetlinkPayload::InnerMessage(x) => out.push(x),
            NetlinkPayload::Error(e) => {
                if let Some(code) = e.code {
                    let errno = code.get().saturating_abs();
                    return Err(NlError::new(
                        Some(errno),
                        std::io::Error::from_raw_os_error(errno).to_string(),
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(out)
}
