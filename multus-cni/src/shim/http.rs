//! One HTTP/1.1 POST over a unix socket, bounded in time at every step, with no runtime and no HTTP
//! library: what the shim needs, and nothing that would make a short-lived plugin process bigger.
//!
//! The connection is made non-blocking (a daemon that does not accept, with its backlog full, makes a
//! blocking `connect` wait forever), retried while the socket is missing or refused until the connect
//! bound, then reads and writes are bounded by what is left of the total. The answer may come with a
//! `Content-Length`, chunked (Go's server chunks bodies over 2 KiB), or until the daemon closes.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long each part of a call may take.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Waiting for the daemon to accept (while its socket is missing or refuses).
    pub connect: Duration,
    /// The whole call, connect included.
    pub total: Duration,
}

/// Why a call got no answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The daemon could not be reached within the connect bound.
    Connect(String),
    /// The daemon did not answer within the total bound.
    Timeout,
    /// The connection broke, or the answer was not HTTP.
    Broken(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(m) => write!(f, "cannot connect: {m}"),
            CallError::Timeout => write!(f, "no answer in time"),
            CallError::Broken(m) => write!(f, "{m}"),
        }
    }
}

/// One non-blocking connect attempt.
fn connect_once(sock: &Path) -> std::io::Result<UnixStream> {
    let bytes = sock.as_os_str().as_bytes();
    // SAFETY: a zeroed sockaddr_un is valid; the path is copied within its bounds (checked below).
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return Err(std::io::Error::other("socket path too long"));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2); the descriptor is owned by the UnixStream made from it right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket that nothing else owns.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    let rc = unsafe { libc::connect(fd, (&raw const addr).cast(), len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    stream.set_nonblocking(false)?;
    Ok(stream)
}

fn retriable(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ECONNREFUSED | libc::EAGAIN)
    )
}

fn connect(sock: &Path, b: Bounds, start: Instant) -> Result<UnixStream, CallError> {
    loop {
        match connect_once(sock) {
            Ok(s) => return Ok(s),
            Err(e) if retriable(&e) && start.elapsed() + Duration::from_millis(50) < b.connect => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(CallError::Connect(format!(
                    "{}: {e} (waited {:?})",
                    sock.display(),
                    start.elapsed()
                )))
            }
        }
    }
}

fn left(start: Instant, total: Duration) -> Result<Duration, CallError> {
    total
        .checked_sub(start.elapsed())
        .filter(|d| !d.is_zero())
        .ok_or(CallError::Timeout)
}

fn io_err(e: std::io::Error) -> CallError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => CallError::Timeout,
        _ => CallError::Broken(format!("connection to the daemon: {e}")),
    }
}

/// `POST path` with a JSON body on the socket; the status and the body of the answer.
pub fn post(sock: &Path, path: &str, body: &[u8], b: Bounds) -> Result<(u16, Vec<u8>), CallError> {
    let start = Instant::now();
    let mut s = connect(sock, b, start)?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: dummy\r\nUser-Agent: multus-shim\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.set_write_timeout(Some(left(start, b.total)?))
        .map_err(io_err)?;
    s.write_all(head.as_bytes()).map_err(io_err)?;
    s.write_all(body).map_err(io_err)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(done) = complete(&buf)? {
            return Ok(done);
        }
        s.set_read_timeout(Some(left(start, b.total)?))
            .map_err(io_err)?;
        match s.read(&mut chunk) {
            Ok(0) => return finish_at_eof(&buf),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
}

struct Head {
    status: u16,
    body_start: usize,
    length: Option<usize>,
    chunked: bool,
}

fn parse_head(buf: &[u8]) -> Result<Option<Head>, CallError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| CallError::Broken(format!("not an HTTP answer: {status_line:?}")))?;
    let mut head = Head {
        status,
        body_start: end + 4,
        length: None,
        chunked: false,
    };
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "content-length" {
            head.length = v.parse().ok();
        } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
            head.chunked = true;
        }
    }
    Ok(Some(head))
}

/// The answer, once all of it is in `buf`.
fn complete(buf: &[u8]) -> Result<Option<(u16, Vec<u8>)>, CallError> {
    let Some(h) = parse_head(buf)? else {
        return Ok(None);
    };
    let body = &buf[h.body_start..];
    if h.chunked {
        return Ok(dechunk(body)?.map(|b| (h.status, b)));
    }
    match h.length {
        Some(n) if body.len() >= n => Ok(Some((h.status, body[..n].to_vec()))),
        _ => Ok(None),
    }
}

fn finish_at_eof(buf: &[u8]) -> Result<(u16, Vec<u8>), CallError> {
    if let Some(done) = complete(buf)? {
        return Ok(done);
    }
    match parse_head(buf)? {
        Some(h) if h.length.is_none() && !h.chunked => Ok((h.status, buf[h.body_start..].to_vec())),
        _ => Err(CallError::Broken(
            "the daemon closed the connection before its answer was complete".into(),
        )),
    }
}

/// A whole chunked body, or `None` while its last chunk has not arrived.
fn dechunk(mut b: &[u8]) -> Result<Option<Vec<u8>>, CallError> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| CallError::Broken(format!("bad chunk size {size_text:?}")))?;
        let data = eol + 2;
        if size == 0 {
            return Ok(Some(out));
        }
        if b.len() < data + size + 2 {
            return Ok(None);
        }
        out.extend_from_slice(&b[data..data + size]);
        b = &b[data + size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_length_chunked_or_until_close() {
        let fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(complete(fixed).unwrap(), Some((200, b"{}".to_vec())));
        assert_eq!(complete(&fixed[..fixed.len() - 1]).unwrap(), None);
        let chunked = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n";
        assert_eq!(complete(chunked).unwrap(), Some((400, b"abcde".to_vec())));
        assert_eq!(complete(&chunked[..40]).unwrap(), None);
        let open = b"HTTP/1.0 200 OK\r\n\r\nhello";
        assert_eq!(finish_at_eof(open).unwrap(), (200, b"hello".to_vec()));
        assert!(finish_at_eof(&fixed[..fixed.len() - 1]).is_err());
        assert!(complete(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn no_daemon_is_a_bounded_connect_error() {
        let d = tempfile::tempdir().unwrap();
        let b = Bounds {
            connect: Duration::from_millis(200),
            total: Duration::from_secs(1),
        };
        let t = Instant::now();
        let e = post(&d.path().join("multus.sock"), "/cni", b"{}", b).unwrap_err();
        assert!(matches!(e, CallError::Connect(_)), "{e}");
        assert!(t.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_daemon_that_never_answers_is_a_timeout() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("multus.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let b = Bounds {
            connect: Duration::from_millis(200),
            total: Duration::from_millis(300),
        };
        assert_eq!(
            post(&sock, "/cni", b"{}", b).unwrap_err(),
            CallError::Timeout
        );
    }
}
