//! The two HTTP servers: upstream's API on the unix socket (`POST /cni`, `POST /delegate`, `/healthz`,
//! `/readyz`), one connection per shim call (keep-alive off, as upstream), at most `connectionLimit` at
//! once; and `/metrics`, `/healthz`, `/readyz` on the TCP `metricsPort` for Prometheus and the kubelet's
//! probes. Both stop accepting when shutdown starts.

use crate::{handler, Daemon};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The largest request body taken (a Multus config with every delegate inline is far smaller).
const MAX_BODY: usize = 16 << 20;

fn answer(status: u16, body: Vec<u8>, content_type: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn health(d: &Daemon, path: &str, method: &Method) -> Option<Response<Full<Bytes>>> {
    let status = match path {
        "/healthz" => 200,
        "/readyz" if d.ready() => 200,
        "/readyz" => 500,
        _ => return None,
    };
    if method != Method::GET && method != Method::POST {
        return Some(answer(405, b"Method not allowed\n".to_vec(), "text/plain"));
    }
    Some(answer(status, Vec::new(), "application/json"))
}

async fn socket_route(
    d: Arc<Daemon>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if let Some(r) = health(&d, &path, &method) {
        return r;
    }
    let handler = match path.as_str() {
        multus_cni::shim::protocol::CNI_PATH | multus_cni::shim::protocol::DELEGATE_PATH => path,
        _ => return answer(404, Vec::new(), "text/plain"),
    };
    if method != Method::POST {
        return answer(405, b"Method not allowed\n".to_vec(), "text/plain");
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return answer(
                400,
                format!("reading the request: {e}\n").into_bytes(),
                "text/plain",
            )
        }
    };
    let (status, body) = if handler == multus_cni::shim::protocol::CNI_PATH {
        handler::in_flight(&d, &handler, handler::cni(&d, &body)).await
    } else {
        handler::in_flight(&d, &handler, crate::delegate::serve(&d, &body)).await
    };
    answer(status, body, "application/json")
}

/// Serves the unix socket until shutdown starts.
pub async fn serve_socket(d: Arc<Daemon>, listener: tokio::net::UnixListener) {
    let limit = d.cfg.connection_limit.map(|n| Arc::new(Semaphore::new(n)));
    let mut stop = d.stop_rx();
    loop {
        let permit = match &limit {
            Some(s) => tokio::select! {
                p = s.clone().acquire_owned() => p.ok(),
                _ = stop.changed() => break,
            },
            None => None,
        };
        let stream = tokio::select! {
            acc = listener.accept() => match acc {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("accepting on the socket: {e}");
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let d = d.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let d = d.clone();
                async move { Ok::<_, Infallible>(socket_route(d, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
            drop(permit);
        });
    }
}

async fn metrics_route(
    d: Arc<Daemon>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if let Some(r) = health(&d, path, req.method()) {
        return r;
    }
    match path {
        "/metrics" => answer(
            200,
            d.metrics.render(&d.cache).into_bytes(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        _ => answer(404, Vec::new(), "text/plain"),
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on the TCP listener until shutdown starts.
pub async fn serve_metrics(d: Arc<Daemon>, listener: tokio::net::TcpListener) {
    let mut stop = d.stop_rx();
    loop {
        let stream = tokio::select! {
            acc = listener.accept() => match acc {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
            _ = stop.changed() => break,
        };
        let d = d.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let d = d.clone();
                async move { Ok::<_, Infallible>(metrics_route(d, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
