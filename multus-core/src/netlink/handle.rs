//! A netlink connection bound to one network namespace.

use super::NlError;
use crate::cni::CniError;
use crate::netns::NetNs;
use futures::StreamExt;
use rtnetlink::packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, AsyncSocket, TokioSocket};

/// A route-netlink connection whose socket was created in a given network namespace. The connection task
/// runs on the current tokio runtime and stops when the handle is dropped.
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
        let sock = ns.run(move || {
            let _guard = rt.enter();
            TokioSocket::new(NETLINK_ROUTE)
        })?;
        let sock = sock.map_err(|e| {
            CniError::kernel(format!(
                "cannot open a netlink socket in {}: {e}",
                ns.path().display()
            ))
        })?;
        Ok(Self::from_socket(sock))
    }

    /// A connection in `ns`, or in the calling thread's namespace when `ns` is `None`.
    pub fn open(ns: Option<&NetNs>) -> Result<Self, CniError> {
        match ns {
            Some(ns) => Self::open_in(ns),
            None => Self::current(),
        }
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
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = flags | NLM_F_REQUEST | NLM_F_ACK;
        self.exchange(req).await
    }

    /// A dump request (`NLM_F_DUMP`): every object of the kind asked for.
    pub async fn dump(
        &self,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let mut req = NetlinkMessage::from(msg);
        req.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        self.exchange(req).await
    }

    async fn exchange(
        &self,
        req: NetlinkMessage<RouteNetlinkMessage>,
    ) -> Result<Vec<RouteNetlinkMessage>, NlError> {
        let mut h = self.handle.clone();
        let mut resp = h
            .request(req)
            .map_err(|e| NlError::new(None, format!("netlink request not sent: {e}")))?;
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
}
