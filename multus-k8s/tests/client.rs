//! The API client against the loopback HTTPS API server stand-in: authentication, the REST paths, errors,
//! retries, conflicts and connection reuse.

use multus_k8s::annotation::NETWORK_STATUS_ANNOTATION;
use multus_k8s::client::{Client, ClientConfig, RetryPolicy};
use multus_testsupport::api_server::{KubeconfigAuth, TestApiServer};
use std::time::{Duration, Instant};

fn client(server: &TestApiServer, auth: KubeconfigAuth) -> (Client, tempfile::TempDir) {
    let d = tempfile::tempdir().unwrap();
    let kc = server.write_kubeconfig(d.path(), auth).unwrap();
    (Client::new(ClientConfig::from_kubeconfig(&kc).unwrap()), d)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn token_and_client_certificate_auth_one_connection() {
    let server = TestApiServer::start().unwrap();
    server.add_pod(
        "default",
        "sample-pod",
        "uid-1",
        &[("k8s.v1.cni.cncf.io/networks", "macvlan-conf")],
    );
    server.add_nad(
        "default",
        "macvlan-conf",
        r#"{"cniVersion":"0.3.1","type":"macvlan"}"#,
        &[],
    );
    for auth in [KubeconfigAuth::Token, KubeconfigAuth::ClientCertificate] {
        server.clear_log();
        let (mut c, _d) = client(&server, auth);
        rt().block_on(async {
            let pod = c
                .get_pod("default", "sample-pod", RetryPolicy::default())
                .await
                .unwrap();
            assert_eq!(pod.uid, "uid-1");
            assert_eq!(
                pod.annotations["k8s.v1.cni.cncf.io/networks"],
                "macvlan-conf"
            );
            let nad = c.get_nad("default", "macvlan-conf").await.unwrap();
            assert_eq!(nad["metadata"]["name"], "macvlan-conf");
            c.set_pod_annotation(
                "default",
                "sample-pod",
                Some("uid-1"),
                NETWORK_STATUS_ANNOTATION,
                "[]",
                5,
            )
            .await
            .unwrap();
        });
        assert_eq!(
            c.connections_opened(),
            1,
            "{auth:?}: one TLS connection for every call"
        );
        assert_eq!(server.connections(), 1);
        assert_eq!(
            server.requests(),
            [
                "GET /api/v1/namespaces/default/pods/sample-pod -> 200",
                "GET /apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/macvlan-conf -> 200",
                "GET /api/v1/namespaces/default/pods/sample-pod -> 200",
                "PUT /api/v1/namespaces/default/pods/sample-pod/status -> 200",
            ]
        );
    }
    assert_eq!(
        server.network_status("default", "sample-pod").unwrap(),
        serde_json::json!([])
    );
}

#[test]
fn refusals_and_absences() {
    let server = TestApiServer::start().unwrap();
    server.add_pod("default", "p", "u", &[]);
    server.add_nad("other", "secret", "{}", &[]);
    server.forbid_nad("other", "secret");
    let (mut c, _d) = client(&server, KubeconfigAuth::Token);
    rt().block_on(async {
        let e = c.get_nad("default", "missing").await.unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let cni = e.to_cni("NAD default/missing");
        assert_eq!(cni.code.code(), 7);
        assert!(
            cni.msg.contains("404") && cni.msg.contains("\"missing\" not found"),
            "{cni}"
        );
        let e = c.get_nad("other", "secret").await.unwrap_err();
        assert_eq!(e.status(), Some(403));
        assert!(e.to_string().contains("forbidden"), "{e}");
        // A pod of another UID is not annotated.
        let e = c
            .set_pod_annotation(
                "default",
                "p",
                Some("other-uid"),
                NETWORK_STATUS_ANNOTATION,
                "[]",
                3,
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("UID"), "{e}");
    });
    let (mut bad, _d2) = client(&server, KubeconfigAuth::WrongToken);
    rt().block_on(async {
        let e = bad.get_nad("other", "secret").await.unwrap_err();
        assert_eq!(e.status(), Some(401));
        assert_eq!(e.to_cni("x").code.code(), 7);
    });
}

#[test]
fn status_conflicts_are_retried_with_a_fresh_get() {
    let server = TestApiServer::start().unwrap();
    server.add_pod("ns", "p", "u", &[("keep", "me")]);
    let (mut c, _d) = client(&server, KubeconfigAuth::Token);
    server.inject_conflicts(2);
    rt().block_on(async {
        c.set_pod_annotation(
            "ns",
            "p",
            Some("u"),
            NETWORK_STATUS_ANNOTATION,
            "[{\"name\":\"x\"}]",
            5,
        )
        .await
        .unwrap();
    });
    let puts: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PUT"))
        .collect();
    assert_eq!(puts.len(), 3, "{puts:?}");
    assert!(puts[0].ends_with("409") && puts[1].ends_with("409") && puts[2].ends_with("200"));
    let pod = server.pod("ns", "p").unwrap();
    assert_eq!(pod["metadata"]["annotations"]["keep"], "me");
    assert_eq!(server.network_status("ns", "p").unwrap()[0]["name"], "x");
    // Conflicts beyond the limit are an error, not a silent success.
    server.inject_conflicts(10);
    let e = rt()
        .block_on(c.set_pod_annotation("ns", "p", None, NETWORK_STATUS_ANNOTATION, "[]", 3))
        .unwrap_err();
    assert_eq!(e.status(), Some(409));
}

#[test]
fn pod_get_retry_is_bounded_and_configurable() {
    let mut server = TestApiServer::start().unwrap();
    let (mut c, _d) = client(&server, KubeconfigAuth::Token);
    server.add_pod("default", "there", "u", &[]);
    let retry = RetryPolicy {
        timeout: Duration::from_secs(5),
        interval: Duration::from_millis(100),
    };
    assert_eq!(
        rt().block_on(c.get_pod("default", "there", retry))
            .unwrap()
            .name,
        "there"
    );
    // Not found is authoritative: answered at once, not retried for the whole bound.
    let t = Instant::now();
    let e = rt()
        .block_on(c.get_pod("default", "never", retry))
        .unwrap_err();
    assert!(e.is_not_found());
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    // The API server down: retried within the bound, then "try again later".
    server.stop();
    let retry = RetryPolicy {
        timeout: Duration::from_millis(400),
        interval: Duration::from_millis(100),
    };
    let t = Instant::now();
    let e = rt()
        .block_on(c.get_pod("default", "late", retry))
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(2));
    let cni = e.to_cni("pod default/late");
    assert_eq!(cni.code.code(), 11, "{cni}");
}

/// A `tokenFile` that the kubelet rotates is read again when it changes: a long-running client (the thick
/// daemon) keeps being let in with the new token, and a wrong one is refused at the next request.
#[test]
fn a_rotated_token_file_is_read_again() {
    let server = TestApiServer::start().unwrap();
    server.add_pod("default", "p", "u", &[]);
    let d = tempfile::tempdir().unwrap();
    let kc = server
        .write_kubeconfig(d.path(), KubeconfigAuth::Token)
        .unwrap();
    let tok = d.path().join("token");
    std::fs::write(&tok, format!("{}\n", server.token())).unwrap();
    let text = std::fs::read_to_string(&kc).unwrap();
    let text = text.replace(&format!("token: {}", server.token()), "tokenFile: token");
    std::fs::write(&kc, text).unwrap();
    let mut c = Client::new(ClientConfig::from_kubeconfig(&kc).unwrap());
    let rotate = |t: &str, secs: u64| {
        std::fs::write(&tok, t).unwrap();
        let f = std::fs::File::options().write(true).open(&tok).unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(secs))
            .unwrap();
    };
    rt().block_on(async {
        assert!(c.get_pod_raw("default", "p").await.is_ok());
        rotate("expired-token", 5);
        assert_eq!(
            c.get_pod_raw("default", "p").await.unwrap_err().status(),
            Some(401)
        );
        rotate(server.token(), 10);
        assert!(c.get_pod_raw("default", "p").await.is_ok());
    });
}
