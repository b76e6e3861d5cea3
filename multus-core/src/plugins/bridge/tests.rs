//! Unit tests of the bridge's config parsing, what it declines, and the gateways of its result.

use super::*;
use crate::cni::Command;
use serde_json::json;

fn conf(mut v: serde_json::Value) -> PluginConf {
    v["type"] = json!("bridge");
    PluginConf::from_value(v).unwrap()
}

fn parse(v: serde_json::Value, args: &str) -> Result<BridgeConf, CniError> {
    BridgeConf::parse(&conf(v), &CniArgs::parse(args).unwrap())
}

#[test]
fn defaults_and_every_key() {
    let c = parse(json!({"type": "bridge"}), "").unwrap();
    assert_eq!(c.bridge, "cni0");
    assert!(!c.is_gateway && !c.is_default_gateway && !c.force_address);
    assert_eq!(
        (c.mtu, c.hairpin, c.promisc, c.mac),
        (None, false, false, None)
    );
    let c = parse(
        json!({"type": "bridge", "bridge": "br9", "isDefaultGateway": true, "forceAddress": true,
               "mtu": 1400, "hairpinMode": true, "ipam": {"type": "host-local"},
               "dns": {"nameservers": ["10.0.0.53"]}}),
        "",
    )
    .unwrap();
    assert_eq!(c.bridge, "br9");
    assert!(c.is_gateway, "isDefaultGateway implies isGateway");
    assert!(c.is_default_gateway && c.force_address && c.hairpin);
    assert_eq!(c.mtu, Some(1400));
    assert_eq!(c.ipam_type.as_deref(), Some("host-local"));
    assert_eq!(c.dns.nameservers, ["10.0.0.53"]);
    assert_eq!(
        parse(json!({"type": "bridge", "mtu": 0}), "").unwrap().mtu,
        None
    );
}

#[test]
fn mac_precedence() {
    let mac = |v, args| parse(v, args).unwrap().mac.map(|m| m.to_string());
    assert_eq!(
        mac(json!({}), "MAC=02:00:00:00:00:01").as_deref(),
        Some("02:00:00:00:00:01")
    );
    let with_args = json!({"args": {"cni": {"mac": "02:00:00:00:00:02"}}});
    assert_eq!(
        mac(with_args.clone(), "MAC=02:00:00:00:00:01").as_deref(),
        Some("02:00:00:00:00:02")
    );
    let mut rc = with_args;
    rc["runtimeConfig"] = json!({"mac": "02:00:00:00:00:03"});
    assert_eq!(mac(rc, "").as_deref(), Some("02:00:00:00:00:03"));
}

#[test]
fn bad_values_are_code_7_naming_the_key() {
    for (bad, key) in [
        (json!({"bridge": 3}), "bridge"),
        (json!({"bridge": "a/b"}), "bridge"),
        (json!({"bridge": "x".repeat(16)}), "bridge"),
        (json!({"isGateway": "yes"}), "isGateway"),
        (json!({"isDefaultGateway": 1}), "isDefaultGateway"),
        (json!({"forceAddress": "no"}), "forceAddress"),
        (json!({"mtu": -1}), "mtu"),
        (json!({"mtu": "1500"}), "mtu"),
        (json!({"hairpinMode": 1}), "hairpinMode"),
        (json!({"promiscMode": "on"}), "promiscMode"),
        (
            json!({"hairpinMode": true, "promiscMode": true}),
            "promiscuous mode",
        ),
        (json!({"runtimeConfig": {"mac": "nope"}}), "MAC"),
    ] {
        let e = parse(bad.clone(), "").unwrap_err();
        assert_eq!(e.code.code(), 7, "{bad}: {e}");
        assert!(e.msg.contains(key), "{bad}: {e}");
    }
    assert_eq!(parse(json!({}), "MAC=zz").unwrap_err().code.code(), 7);
}

#[test]
fn declines_what_it_does_not_implement() {
    let base = json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge", "bridge": "br0",
        "isGateway": true, "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}});
    assert_eq!(Bridge.declines(&conf(base.clone())), None);
    // The neutral values of the declined keys are served.
    let mut neutral = base.clone();
    for (k, v) in [
        ("ipMasq", json!(false)),
        ("vlan", json!(0)),
        ("vlanTrunk", json!(null)),
        ("preserveDefaultVlan", json!(true)),
        ("macspoofchk", json!(false)),
        ("enabledad", json!(false)),
        ("disableContainerInterface", json!(false)),
        ("portIsolation", json!(false)),
        ("cni.dev/whatever", json!(1)),
    ] {
        neutral[k] = v;
    }
    assert_eq!(Bridge.declines(&conf(neutral)), None);
    for (k, v) in [
        ("ipMasq", json!(true)),
        ("vlan", json!(100)),
        ("vlanTrunk", json!([{"id": 101}])),
        ("vlanTrunk", json!([])),
        ("preserveDefaultVlan", json!(false)),
        ("macspoofchk", json!(true)),
        ("enabledad", json!(true)),
        ("disableContainerInterface", json!(true)),
        ("portIsolation", json!(true)),
        ("ipMasq", json!("true")),
        ("bcqueuelen", json!(100)),
        ("mac", json!("02:00:00:00:00:01")),
    ] {
        let mut c = base.clone();
        c[k] = v.clone();
        let why = Bridge
            .declines(&conf(c))
            .unwrap_or_else(|| panic!("{k}: {v}"));
        assert!(why.contains(&format!("{k:?}")), "{k}: {why}");
    }
}

#[tokio::test]
async fn a_declined_config_run_directly_is_refused() {
    let reg = std::sync::Arc::new(crate::delegate::Registry::new());
    let ctx = Context::new(Command::Add, "c1", None, "eth0", reg);
    let c = conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge", "vlan": 7}));
    let e = Bridge.add(&ctx, &c).await.unwrap_err();
    assert_eq!(e.code.code(), 2, "unsupported field");
    assert!(e.msg.contains("\"vlan\": 7"), "the key and its value: {e}");
}

fn result(v: serde_json::Value) -> CniResult {
    CniResult::from_value(&v).unwrap()
}

#[test]
fn gateways_as_the_reference_computes_them() {
    let ipam = json!({"cniVersion": "1.0.0",
        "ips": [{"address": "10.1.0.5/24"}, {"address": "fd00::5/64", "gateway": "fd00::fe"},
                {"address": "10.2.0.5/16", "gateway": "10.2.0.9"}],
        "routes": [{"dst": "10.9.0.0/16"}]});
    let mut c = parse(json!({"isGateway": true}), "").unwrap();
    let mut r = result(ipam.clone());
    let gws = calc_gateways(&mut r, &c);
    let text: Vec<String> = gws.iter().map(|g| g.to_string()).collect();
    assert_eq!(text, ["10.1.0.1/24", "10.2.0.9/16", "fd00::fe/64"]);
    assert!(r.ips.iter().all(|ip| ip.interface == Some(2)));
    assert_eq!(r.ips[0].gateway, Some("10.1.0.1".parse().unwrap()));
    assert_eq!(
        r.routes.len(),
        1,
        "no default route without isDefaultGateway"
    );

    c.is_default_gateway = true;
    let mut r = result(ipam.clone());
    calc_gateways(&mut r, &c);
    let routes: Vec<String> = r
        .routes
        .iter()
        .map(|r| format!("{} {:?}", r.dst, r.gw))
        .collect();
    assert_eq!(
        routes,
        [
            "10.9.0.0/16 None",
            "0.0.0.0/0 Some(10.1.0.1)",
            "::/0 Some(fd00::fe)"
        ]
    );
    // A default route via a gateway from IPAM is kept; one without a gateway does not count.
    let mut with_default = ipam.clone();
    with_default["routes"] = json!([{"dst": "0.0.0.0/0", "gw": "10.1.0.254"}, {"dst": "::/0"}]);
    let mut r = result(with_default);
    calc_gateways(&mut r, &c);
    assert_eq!(r.routes.len(), 3);
    assert_eq!(r.routes[2].gw, Some("fd00::fe".parse().unwrap()));

    let plain = parse(json!({}), "").unwrap();
    let mut r = result(ipam);
    assert!(calc_gateways(&mut r, &plain).is_empty());
    assert_eq!(r.ips[0].gateway, None);
}

#[test]
fn the_registry_runs_the_binary_for_a_declined_config() {
    use std::os::unix::fs::PermissionsExt;
    let mut r = crate::delegate::Registry::new();
    r.register("bridge", std::sync::Arc::new(Bridge));
    let served = conf(json!({"cniVersion": "1.0.0", "name": "n", "isGateway": true}));
    let declined = conf(json!({"cniVersion": "1.0.0", "name": "n", "ipMasq": true}));
    let resolve = |c: Option<&PluginConf>, path: &[std::path::PathBuf]| {
        match c {
            Some(c) => r.resolve_for(c, path),
            None => r.resolve("bridge", path),
        }
        .map(|d| d.describe())
    };
    assert_eq!(resolve(Some(&served), &[]).unwrap(), "built-in bridge");
    assert_eq!(resolve(None, &[]).unwrap(), "built-in bridge");
    // No binary: the error says why the built-in did not run.
    let e = resolve(Some(&declined), &[]).unwrap_err();
    assert_eq!(e.code.code(), 7);
    assert!(
        e.msg.contains("declined key \"ipMasq\"") && e.msg.contains("failed to find plugin"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bridge");
    std::fs::write(&bin, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = [dir.path().to_path_buf()];
    assert_eq!(
        resolve(Some(&declined), &path).unwrap(),
        bin.display().to_string()
    );
    assert_eq!(resolve(Some(&served), &path).unwrap(), "built-in bridge");
}
