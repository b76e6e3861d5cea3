//! Where the inputs come from, on stable Rust: proptest strategies for raw bytes, text and JSON structures
//! built from the keys and values the parsers read, and mutations of the corpus' seeds (byte-level:
//! flips, insertions, deletions, duplications, splices; JSON-level: a node replaced, retyped, removed,
//! nested thousands deep, given an extreme number or a hostile string). Deterministic for a given seed.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value};

/// What a target reads: JSON documents, or text (an annotation, `CNI_ARGS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A JSON document.
    Json,
    /// A line of text.
    Text,
}

/// The keys the parsers look for: a generated or mutated object uses them more often than chance would.
pub const KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "plugins",
    "master",
    "pfName",
    "mode",
    "mtu",
    "mac",
    "ipam",
    "subnet",
    "ranges",
    "rangeStart",
    "gateway",
    "routes",
    "dst",
    "gw",
    "dns",
    "nameservers",
    "runtimeConfig",
    "capabilities",
    "prevResult",
    "interfaces",
    "ips",
    "address",
    "interface",
    "sandbox",
    "version",
    "ip4",
    "ip6",
    "ip",
    "delegates",
    "clusterNetwork",
    "defaultNetworks",
    "kubeconfig",
    "cniDir",
    "binDir",
    "confDir",
    "logLevel",
    "logFile",
    "logOptions",
    "logToStderr",
    "readinessindicatorfile",
    "namespaceIsolation",
    "globalNamespaces",
    "systemNamespaces",
    "multusNamespace",
    "retryDeleteOnError",
    "delegateTimeout",
    "linkInContainer",
    "deviceID",
    "pciBusID",
    "vlan",
    "vlanQoS",
    "vlanProto",
    "spoofchk",
    "trust",
    "link_state",
    "min_tx_rate",
    "max_tx_rate",
    "dataDir",
    "allowNoIommu",
    "metadata",
    "spec",
    "config",
    "annotations",
    "namespace",
    "uid",
    "Data",
    "PodDeviceEntries",
    "PodUID",
    "ResourceName",
    "DeviceIDs",
    "kind",
    "containerID",
    "ifname",
    "record",
    "attachments",
    "network",
    "result",
    "format",
    "isDefault",
    "extraArgs",
    "netns",
    "pci",
    "pci-address",
    "vfio-device",
    "Name",
    "Bytes",
    "ifnameRequest",
    "macRequest",
    "ipRequest",
    "containerId",
    "cni.dev/valid-attachments",
    "default-route",
    "disableCheck",
    "disableGC",
    "vf",
    "pf",
    "original",
    "changes",
    "phase",
    "driver",
    "netdev",
    "k8s.v1.cni.cncf.io/networks",
    "v1.multus-cni.io/default-network",
    "CNIDeviceInfoFile",
];

/// Values that have broken parsers somewhere: versions, addresses, names at and past their limits,
/// separators, traversal, NUL, non-ASCII, a name of ~64 KiB.
pub fn hostile_strings() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "0.1.0",
        "0.2.0",
        "0.3.0",
        "0.3.1",
        "0.4.0",
        "1.0.0",
        "1.1.0",
        "2.0.0",
        "1.0",
        "v1",
        "10.1.2.3/24",
        "10.1.2.3",
        "fd00::1/64",
        "::",
        "0.0.0.0/0",
        "10.0.0.1/33",
        "256.0.0.1/8",
        "eth0",
        "net1",
        "123456789012345",
        "1234567890123456",
        "lo",
        ".",
        "..",
        "../../etc",
        "a/b",
        "a:b",
        "a b",
        "a\0b",
        "é",
        "\u{202e}",
        "macvlan",
        "ipvlan",
        "bridge",
        "host-local",
        "sriov",
        "dpdk",
        "multus",
        "bridge",
        "l2",
        "passthru",
        "0000:03:10.1",
        "0000:zz:10.1",
        "02:00:00:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "default/net1",
        "ns/name@eth1",
        "a,b,c",
        "[]",
        "{}",
        "null",
        "true",
        "-1",
        "4095",
        "65536",
        "K=V;X=Y",
        "IgnoreUnknown=1",
        "=",
        ";;",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("x".repeat(65_500));
    v.push("a".repeat(300));
    v
}

/// Numbers at the edges of what the parsers take.
const NUMBERS: &[i64] = &[
    0,
    1,
    -1,
    7,
    15,
    16,
    255,
    4094,
    4095,
    4096,
    65_535,
    65_536,
    1 << 31,
    i64::MAX,
    i64::MIN,
];

/// A splitmix64 generator for the mutations (proptest's runner drives the strategies).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// Makes one input after another for a target.
pub struct Generator {
    runner: TestRunner,
    rng: Rng,
    shape: Shape,
    seeds: Vec<Vec<u8>>,
    strings: Vec<String>,
    json: BoxedStrategy<Value>,
    bytes: BoxedStrategy<Vec<u8>>,
    text: BoxedStrategy<String>,
}

impl Generator {
    /// A generator for inputs of `shape`, mutating `seeds` (the corpus) among other things.
    pub fn new(seed: u64, shape: Shape, seeds: Vec<Vec<u8>>) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &key);
        Generator {
            runner: TestRunner::new_with_rng(Config::default(), rng),
            rng: Rng::new(seed),
            shape,
            seeds,
            strings: hostile_strings(),
            json: json_value().boxed(),
            bytes: vec(any::<u8>(), 0..600).boxed(),
            text: text().boxed(),
        }
    }

    fn sample<T: std::fmt::Debug>(&mut self, s: &BoxedStrategy<T>) -> Option<T> {
        s.new_tree(&mut self.runner).ok().map(|t| t.current())
    }

    /// The next input: raw bytes, a generated structure, or a mutated seed.
    pub fn next_input(&mut self) -> Vec<u8> {
        let roll = self.rng.below(10);
        if self.seeds.is_empty() || roll < 3 {
            return match (roll, self.shape) {
                (0, _) => self.sample(&self.bytes.clone()).unwrap_or_default(),
                (_, Shape::Json) => self.generated_json(),
                (_, Shape::Text) => self
                    .sample(&self.text.clone())
                    .unwrap_or_default()
                    .into_bytes(),
            };
        }
        let seed = self.seeds[self.rng.below(self.seeds.len())].clone();
        let mut out = match serde_json::from_slice::<Value>(&seed) {
            Ok(mut v) if roll < 7 => {
                for _ in 0..=self.rng.below(3) {
                    self.mutate_json(&mut v);
                }
                self.serialize(&v)
            }
            _ => seed,
        };
        if roll >= 6 || self.shape == Shape::Text {
            for _ in 0..=self.rng.below(4) {
                self.mutate_bytes(&mut out);
            }
        }
        out
    }

    fn generated_json(&mut self) -> Vec<u8> {
        let v = self.sample(&self.json.clone()).unwrap_or(Value::Null);
        self.serialize(&v)
    }

    fn serialize(&mut self, v: &Value) -> Vec<u8> {
        let r = if self.rng.chance(30) {
            serde_json::to_vec_pretty(v)
        } else {
            serde_json::to_vec(v)
        };
        r.unwrap_or_default()
    }

    /// One JSON-level mutation of a random node of `v`.
    pub fn mutate_json(&mut self, v: &mut Value) {
        let n = count(v);
        let at = self.rng.below(n);
        let op = self.rng.below(9);
        let replacement = match op {
            0 => self.sample(&self.json.clone()).unwrap_or(Value::Null),
            1 => Value::String(self.strings[self.rng.below(self.strings.len())].clone()),
            2 => Value::from(NUMBERS[self.rng.below(NUMBERS.len())]),
            3 => nested(self.rng.below(200) + 1, self.rng.chance(50)),
            _ => Value::Null,
        };
        let key = KEYS[self.rng.below(KEYS.len())].to_string();
        let pick = self.rng.next_u64() as usize;
        let Some(node) = nth(v, at) else { return };
        match op {
            0..=3 => *node = replacement,
            4 => *node = retype(node),
            5 => {
                if let Value::Object(o) = node {
                    if !o.is_empty() {
                        let k = o.keys().nth(pick % o.len()).cloned().unwrap_or_default();
                        o.remove(&k);
                    }
                }
            }
            6 => {
                if let Value::Object(o) = node {
                    let copy = o.values().nth(pick % o.len().max(1)).cloned();
                    o.insert(key, copy.unwrap_or(Value::Null));
                }
            }
            7 => {
                if let Value::Array(a) = node {
                    if !a.is_empty() {
                        let x = a[pick % a.len()].clone();
                        a.insert(pick % (a.len() + 1), x);
                    }
                }
            }
            _ => *node = Value::Array(vec![node.take()]),
        }
    }

    /// One byte-level mutation of `b`.
    pub fn mutate_bytes(&mut self, b: &mut Vec<u8>) {
        const TOKENS: &[&[u8]] = &[
            b"{", b"}", b"[", b"]", b"\"", b":", b",", b"\\", b"\\u0000", b"\\ud800", b"null",
            b"1e999", b"-0", b";", b"=", b"/", b"@", b" ", b"\n", b"\0", b"\xff", b"\xc3",
        ];
        let len = b.len();
        match self.rng.below(9) {
            0 if len > 0 => {
                let i = self.rng.below(len);
                b[i] ^= 1 << self.rng.below(8);
            }
            1 if len > 0 => {
                let i = self.rng.below(len);
                b[i] = self.rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let i = self.rng.below(len);
                let n = self.rng.below((len - i).min(64)) + 1;
                b.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = self.rng.below(len);
                let n = self.rng.below((len - i).min(64)) + 1;
                let chunk = b[i..i + n].to_vec();
                let at = self.rng.below(len + 1);
                b.splice(at..at, chunk);
            }
            4 => {
                let t = TOKENS[self.rng.below(TOKENS.len())];
                let at = self.rng.below(len + 1);
                b.splice(at..at, t.iter().copied());
            }
            5 => {
                let s = self.strings[self.rng.below(self.strings.len())].clone();
                let at = self.rng.below(len + 1);
                b.splice(at..at, s.into_bytes());
            }
            6 if !self.seeds.is_empty() => {
                // Splice: this input's head with another seed's tail.
                let other = &self.seeds[self.rng.below(self.seeds.len())];
                let cut = self.rng.below(len + 1);
                let from = self.rng.below(other.len() + 1);
                b.truncate(cut);
                b.extend_from_slice(&other[from..]);
            }
            7 => {
                // Nesting far past any parser's recursion limit (10,000 levels and more).
                let depth = self.rng.below(20_000) + 1;
                let (open, close): (&[u8], &[u8]) = if self.rng.chance(50) {
                    (b"[", b"]")
                } else {
                    (b"{\"a\":", b"}")
                };
                let at = self.rng.below(len + 1);
                let mut deep = open.repeat(depth);
                if self.rng.chance(70) {
                    deep.extend(close.repeat(depth));
                }
                b.splice(at..at, deep);
            }
            _ => b.truncate(self.rng.below(len + 1)),
        }
    }
}

/// JSON values: leaves from the hostile values, objects keyed mostly by [`KEYS`], up to 5 levels.
fn json_value() -> impl Strategy<Value = Value> {
    let strings = hostile_strings();
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        proptest::sample::select(NUMBERS).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        proptest::sample::select(strings).prop_map(Value::String),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        let key = prop_oneof![
            4 => proptest::sample::select(KEYS).prop_map(str::to_string),
            1 => "\\PC{0,8}",
        ];
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec((key, inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Text: separators and names of annotations and `CNI_ARGS`, and arbitrary characters.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        proptest::sample::select(hostile_strings()),
        proptest::sample::select(vec![",", "/", "@", ";", "=", " ", "[", "{", "\"", "\n"])
            .prop_map(str::to_string),
        "[a-z0-9-]{1,10}",
        "\\PC{0,6}",
    ];
    vec(piece, 0..12).prop_map(|p| p.concat())
}

/// Arrays (or objects) nested `depth` deep.
fn nested(depth: usize, arrays: bool) -> Value {
    let mut v = Value::Null;
    for _ in 0..depth {
        v = if arrays {
            Value::Array(vec![v])
        } else {
            let mut m = Map::new();
            m.insert("a".into(), v);
            Value::Object(m)
        };
    }
    v
}

/// The same value as another JSON type (a string as a number, an object as an array, ...).
fn retype(v: &Value) -> Value {
    match v {
        Value::String(s) => s
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or(Value::Bool(true)),
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(_) => Value::String(String::new()),
        Value::Null => Value::Object(Map::new()),
        Value::Array(a) => Value::Object(
            a.iter()
                .enumerate()
                .map(|(i, x)| (i.to_string(), x.clone()))
                .collect(),
        ),
        Value::Object(o) => Value::Array(o.values().cloned().collect()),
    }
}

/// The number of nodes of a value.
fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The `n`th node of a value in pre-order.
fn nth(v: &mut Value, n: usize) -> Option<&mut Value> {
    fn walk<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
        if *n == 0 {
            return Some(v);
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().find_map(|x| walk(x, n)),
            Value::Object(o) => o.values_mut().find_map(|x| walk(x, n)),
            _ => None,
        }
    }
    let mut n = n;
    walk(v, &mut n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let seeds = vec![br#"{"cniVersion":"1.0.0","type":"macvlan","master":"eth0"}"#.to_vec()];
        let mut a = Generator::new(7, Shape::Json, seeds.clone());
        let mut b = Generator::new(7, Shape::Json, seeds);
        let xs: Vec<Vec<u8>> = (0..200).map(|_| a.next_input()).collect();
        let ys: Vec<Vec<u8>> = (0..200).map(|_| b.next_input()).collect();
        assert_eq!(xs, ys);
        let distinct: std::collections::HashSet<_> = xs.iter().collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        assert!(xs.iter().any(|x| x.windows(6).any(|w| w == b"master")));
    }

    #[test]
    fn json_mutations_keep_json() {
        let mut g = Generator::new(1, Shape::Json, Vec::new());
        let mut v: Value = serde_json::json!({"a": [1, {"b": "c"}], "d": null});
        for _ in 0..500 {
            g.mutate_json(&mut v);
            assert!(serde_json::to_vec(&v).is_ok());
            if count(&v) > 10_000 {
                v = serde_json::json!({"a": 1});
            }
        }
    }
}
