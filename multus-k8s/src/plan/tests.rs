//! Planning: requests from the pod and the config, attachments from the requests and the NADs.

use super::*;
use crate::nad::Checkpoint;

fn pod(ns: &str, annotations: &[(&str, &str)]) -> Pod {
    Pod {
        namespace: ns.into(),
        name: "sample-pod".into(),
        uid: "uid-1".into(),
        resource_version: "1".into(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn net(s: &str) -> NetworkConfig {
    NetworkConfig::from_slice(s.as_bytes()).unwrap()
}

fn cfg() -> PlanConfig {
    PlanConfig {
        delegates: vec![net(
            r#"{"cniVersion":"1.0.0","name":"cbr0","type":"bridge","capabilities":{"portMappings":true}}"#,
        )],
        multus_namespace: "kube-system".into(),
        global_namespaces: vec!["default".into()],
        system_namespaces: vec!["kube-system".into()],
        conf_dir: "/nonexistent".into(),
        runtime_config: serde_json::json!({"portMappings":[{"hostPort":1}]})
            .as_object()
            .unwrap()
            .clone(),
        ..Default::default()
    }
}

fn nads() -> BTreeMap<(String, String), ResolvedNad> {
    let mut m = BTreeMap::new();
    m.insert(
        ("default".into(), "macvlan-conf".into()),
        ResolvedNad {
            network: net(
                r#"{"cniVersion":"0.3.1","name":"macvlan-conf","type":"macvlan","master":"eth1"}"#,
            ),
            resource_name: None,
        },
    );
    m.insert(
        ("default".into(), "caps".into()),
        ResolvedNad {
            network: net(
                r#"{"cniVersion":"1.0.0","name":"caps","plugins":[{"type":"macvlan","capabilities":{"ips":true,"mac":true}},
                    {"type":"tuning"}]}"#,
            ),
            resource_name: None,
        },
    );
    m.insert(
        ("default".into(), "sriov".into()),
        ResolvedNad {
            network: net(r#"{"cniVersion":"1.0.0","name":"sriov","type":"sriov","capabilities":{"deviceID":true}}"#),
            resource_name: Some("intel.com/sriov".into()),
        },
    );
    m
}

fn plan(p: &Pod, c: &PlanConfig) -> Result<Plan, CniError> {
    let reqs = requests(p, c)?;
    let cp = Checkpoint::parse(
        br#"{"Data":{"PodDeviceEntries":[{"PodUID":"uid-1","ResourceName":"intel.com/sriov","DeviceIDs":{"0":["0000:03:02.0","0000:03:02.1"]}}]}}"#,
    )
    .unwrap();
    build(c, &reqs, &nads(), &mut DevicePool::new(cp, &p.uid), "eth0")
}

#[test]
fn user_example() {
    let p = plan(
        &pod(
            "default",
            &[(annotation::NETWORKS_ANNOTATION, "macvlan-conf")],
        ),
        &cfg(),
    )
    .unwrap();
    let a = &p.attachments;
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].name.as_str(), a[0].ifname.as_str(), a[0].is_default),
        ("cbr0", "eth0", true)
    );
    assert_eq!(a[0].runtime_config["portMappings"][0]["hostPort"], 1);
    assert_eq!(
        (a[1].name.as_str(), a[1].ifname.as_str(), a[1].is_default),
        ("default/macvlan-conf", "net1", false)
    );
    assert!(
        a[1].runtime_config.is_empty(),
        "the kubelet's runtime config never reaches a secondary"
    );
}

#[test]
fn ifnames_and_same_nad_twice() {
    let p = plan(
        &pod(
            "default",
            &[(
                annotation::NETWORKS_ANNOTATION,
                "macvlan-conf@mv0,macvlan-conf,default/macvlan-conf",
            )],
        ),
        &cfg(),
    )
    .unwrap();
    let names: Vec<_> = p.attachments.iter().map(|a| a.ifname.as_str()).collect();
    assert_eq!(names, ["eth0", "mv0", "net2", "net3"]);
    assert!(p.attachments[1..]
        .iter()
        .all(|a| a.name == "default/macvlan-conf"));
    let e = plan(
        &pod(
            "default",
            &[(
                annotation::NETWORKS_ANNOTATION,
                "macvlan-conf@net2,macvlan-conf",
            )],
        ),
        &cfg(),
    )
    .unwrap_err();
    assert!(
        e.msg.contains("attachment 2") && e.msg.contains("\"net2\" is used twice"),
        "{e}"
    );
    let e = plan(
        &pod(
            "default",
            &[(annotation::NETWORKS_ANNOTATION, "macvlan-conf@eth0")],
        ),
        &cfg(),
    )
    .unwrap_err();
    assert!(e.msg.contains("\"eth0\""), "{e}");
}

#[test]
fn requests_reach_plugins_as_go_multus_passes_them() {
    let ann = r#"[{"name":"caps","ips":["10.1.1.5/24"],"mac":"c2:b0:57:49:47:f1","interface":"x0","cni-args":{"k":"v"}}]"#;
    let p = plan(
        &pod("default", &[(annotation::NETWORKS_ANNOTATION, ann)]),
        &cfg(),
    )
    .unwrap();
    let a = &p.attachments[1];
    assert_eq!(a.ifname, "x0");
    assert_eq!(a.runtime_config["ips"][0], "10.1.1.5/24");
    assert_eq!(a.runtime_config["mac"], "c2:b0:57:49:47:f1");
    for pl in a.network.plugins() {
        assert_eq!(pl.get("args").unwrap()["cni"]["k"], "v");
    }
    // Requests that no plugin declares go on as Go Multus does: in runtimeConfig (which only declaring
    // plugins receive), and ips / mac also as IP= / MAC= in CNI_ARGS.
    let p = plan(
        &pod(
            "default",
            &[(
                annotation::NETWORKS_ANNOTATION,
                r#"[{"name":"macvlan-conf","ips":["10.1.1.5/24","fd00::5/64"],"mac":"02:00:00:00:00:05"}]"#,
            )],
        ),
        &cfg(),
    )
    .unwrap();
    let a = &p.attachments[1];
    assert_eq!(
        a.extra_args,
        [
            ("MAC".to_string(), "02:00:00:00:00:05".to_string()),
            ("IP".to_string(), "10.1.1.5/24,fd00::5/64".to_string())
        ]
    );
    assert_eq!(
        a.runtime_config["ips"],
        serde_json::json!(["10.1.1.5/24", "fd00::5/64"])
    );
    for ann in [
        r#"[{"name":"caps","bandwidth":{"ingressRate":1}}]"#,
        r#"[{"name":"caps","portMappings":[{"hostPort":1}]}]"#,
        r#"[{"name":"caps","infiniband-guid":"00:11:22:33:44:55:66:77"}]"#,
    ] {
        let p = plan(
            &pod("default", &[(annotation::NETWORKS_ANNOTATION, ann)]),
            &cfg(),
        )
        .unwrap();
        assert!(p.attachments[1].extra_args.is_empty(), "{ann}");
        assert_eq!(p.attachments[1].runtime_config.len(), 1, "{ann}");
    }
}

#[test]
fn cni_args_are_merged_into_the_nads_own() {
    let mut net = net(
        r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"a","args":{"cni":{"keep":1,"over":"nad"}}},{"type":"b"}]}"#,
    );
    let args = serde_json::json!({"over": "pod", "new": true});
    set_cni_args(&mut net, args.as_object().unwrap()).unwrap();
    let p = net.plugins();
    assert_eq!(
        p[0].get("args").unwrap()["cni"],
        serde_json::json!({"keep":1,"over":"pod","new":true})
    );
    assert_eq!(p[1].get("args").unwrap()["cni"], args);
}

#[test]
fn devices_from_checkpoint_or_selection() {
    let p = plan(
        &pod(
            "default",
            &[(
                annotation::NETWORKS_ANNOTATION,
                r#"[{"name":"sriov"},{"name":"sriov"},{"name":"sriov","deviceID":"0000:09:00.0"}]"#,
            )],
        ),
        &cfg(),
    )
    .unwrap();
    let ids: Vec<_> = p.attachments[1..]
        .iter()
        .map(|a| a.runtime_config["deviceID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["0000:03:02.0", "0000:03:02.1", "0000:09:00.0"]);
    let sriov = Some("intel.com/sriov".to_string());
    assert_eq!(
        p.device_resources,
        [None, sriov.clone(), sriov, None],
        "a checkpoint device has its resource (for the device plugin's file), a requested one none"
    );
    assert_eq!(
        p.attachments[1].network.plugins()[0]
            .get("pciBusID")
            .unwrap(),
        "0000:03:02.0"
    );
    // A third with no device left goes on without one, as Go Multus does.
    let p = plan(
        &pod(
            "default",
            &[(annotation::NETWORKS_ANNOTATION, "sriov,sriov,sriov")],
        ),
        &cfg(),
    )
    .unwrap();
    assert!(!p.attachments[3].runtime_config.contains_key("deviceID"));
    assert_eq!(p.device_resources[3], None);
}

#[test]
fn isolation() {
    let mut c = cfg();
    c.namespace_isolation = true;
    let e = plan(
        &pod(
            "team-a",
            &[(annotation::NETWORKS_ANNOTATION, "team-b/macvlan-conf")],
        ),
        &c,
    )
    .unwrap_err();
    assert!(
        e.msg.contains("element 0") && e.msg.contains("namespaceIsolation"),
        "{e}"
    );
    // The global namespace "default" is allowed.
    let r = requests(
        &pod(
            "team-a",
            &[(annotation::NETWORKS_ANNOTATION, "default/macvlan-conf,x")],
        ),
        &c,
    )
    .unwrap();
    assert_eq!(r[1].nad(), Some(("default", "macvlan-conf")));
    assert_eq!(r[2].nad(), Some(("team-a", "x")));
    c.namespace_isolation = false;
    assert!(requests(
        &pod("team-a", &[(annotation::NETWORKS_ANNOTATION, "team-b/x")]),
        &c
    )
    .is_ok());
}

#[test]
fn default_routes() {
    let mut n = nads();
    n.insert(
        ("default".into(), "b".into()),
        n[&("default".to_string(), "macvlan-conf".to_string())].clone(),
    );
    let cp = Checkpoint::default();
    let c = cfg();
    let p1 = pod(
        "default",
        &[(
            annotation::NETWORKS_ANNOTATION,
            r#"[{"name":"macvlan-conf"},{"name":"b","default-route":["192.168.1.1"]}]"#,
        )],
    );
    let r = requests(&p1, &c).unwrap();
    let p = build(&c, &r, &n, &mut DevicePool::new(cp.clone(), "u"), "eth0").unwrap();
    assert_eq!(
        p.default_route,
        Some((2, vec!["192.168.1.1".parse().unwrap()]))
    );
    let p2 = pod(
        "default",
        &[(
            annotation::NETWORKS_ANNOTATION,
            r#"[{"name":"macvlan-conf","default-route":["192.168.1.1"]},{"name":"b","default-route":["10.0.0.1"]}]"#,
        )],
    );
    let r = requests(&p2, &c).unwrap();
    let e = build(&c, &r, &n, &mut DevicePool::new(cp, "u"), "eth0").unwrap_err();
    assert!(e.msg.contains("at most one"), "{e}");
}

#[test]
fn default_network_sources() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("10-x.conf"),
        br#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"ptp"}"#,
    )
    .unwrap();
    let sub = d.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(
        sub.join("01-first.conflist"),
        br#"{"cniVersion":"1.0.0","name":"first","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap();
    std::fs::write(
        sub.join("02-second.conf"),
        br#"{"cniVersion":"1.0.0","name":"second","type":"bridge"}"#,
    )
    .unwrap();
    let mut c = cfg();
    c.conf_dir = d.path().to_path_buf();
    c.default_networks = vec!["extra".into()];
    for (cluster, want) in [
        (
            "k8s-pod-network".to_string(),
            NetworkSource::Local(net(
                r#"{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"ptp"}"#,
            )),
        ),
        (
            sub.display().to_string(),
            NetworkSource::Local(net(
                r#"{"cniVersion":"1.0.0","name":"first","plugins":[{"type":"bridge"}]}"#,
            )),
        ),
        (
            sub.join("02-second.conf").display().to_string(),
            NetworkSource::Local(net(
                r#"{"cniVersion":"1.0.0","name":"second","type":"bridge"}"#,
            )),
        ),
        (
            "calico".into(),
            NetworkSource::Nad {
                namespace: "kube-system".into(),
                name: "calico".into(),
            },
        ),
    ] {
        c.cluster_network = Some(cluster.clone());
        let r = requests(&pod("default", &[]), &c).unwrap();
        assert_eq!(r[0].source, want, "{cluster}");
        assert!(r[0].is_default);
        assert_eq!(r[1].nad(), Some(("kube-system", "extra")));
        // System namespaces get no defaultNetworks.
        assert_eq!(requests(&pod("kube-system", &[]), &c).unwrap().len(), 1);
    }
    // The pod's default-network annotation replaces the cluster network.
    let r = requests(
        &pod(
            "default",
            &[(annotation::DEFAULT_NETWORK_ANNOTATION, "other-net")],
        ),
        &c,
    )
    .unwrap();
    assert_eq!(r[0].nad(), Some(("kube-system", "other-net")));
    c.namespace_isolation = true;
    let e = requests(
        &pod(
            "team-a",
            &[(annotation::DEFAULT_NETWORK_ANNOTATION, "team-b/x")],
        ),
        &c,
    )
    .unwrap_err();
    assert!(e.msg.contains("namespaceIsolation"), "{e}");
    c.cluster_network = Some("Bad_Name".into());
    let e = requests(&pod("default", &[]), &c).unwrap_err();
    assert!(
        e.msg.contains("clusterNetwork") && e.msg.contains("Bad_Name"),
        "{e}"
    );
    c.cluster_network = None;
    c.delegates.clear();
    assert!(requests(&pod("default", &[]), &c)
        .unwrap_err()
        .msg
        .contains("no default network"));
}

#[test]
fn pod_from_json() {
    let p = Pod::from_json(
        &serde_json::json!({"metadata":{"name":"p","namespace":"n","uid":"u","resourceVersion":"7",
        "annotations":{"a":"b","n":1}}}),
    )
    .unwrap();
    assert_eq!(
        (p.name.as_str(), p.uid.as_str(), p.resource_version.as_str()),
        ("p", "u", "7")
    );
    assert_eq!(p.annotations.len(), 1);
    assert!(Pod::from_json(&serde_json::json!({})).is_err());
}
