//! The one check of every name that comes from input and ends up in a path, a file or a netlink request:
//! container IDs, interface names, network names. Each crate calls these; none has its own rules.

use super::error::CniError;
use std::fmt;

/// Linux's `IFNAMSIZ` less the terminating NUL: the longest interface name the kernel takes.
pub const IFNAME_MAX: usize = 15;

/// A name that failed its check: which kind of name, the name, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName {
    /// What the name is (`"container ID"`, `"interface name"`, `"network name"`).
    pub what: &'static str,
    /// The name as given (cut to 64 characters, so a huge input does not make a huge message).
    pub name: String,
    /// Why it is refused.
    pub why: &'static str,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} is invalid: {}", self.what, self.name, self.why)
    }
}

impl std::error::Error for InvalidName {}

/// A bad name from the environment (`CNI_CONTAINERID`, `CNI_IFNAME`) is code 4; where a name comes from a
/// config, the caller maps it to code 7 with [`CniError::invalid_config`].
impl From<InvalidName> for CniError {
    fn from(e: InvalidName) -> Self {
        CniError::invalid_env(e.to_string())
    }
}

fn invalid(what: &'static str, name: &str, why: &'static str) -> InvalidName {
    InvalidName {
        what,
        name: name.chars().take(64).collect(),
        why,
    }
}

/// A container ID (CNI spec): non-empty, a letter or digit first, then letters, digits, `_`, `.`, `-`.
pub fn container_id(id: &str) -> Result<(), InvalidName> {
    let mut bytes = id.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphanumeric())
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "container ID",
            id,
            "it must start with a letter or digit and hold only letters, digits, '_', '.' and '-'",
        ))
    }
}

/// An interface name (CNI spec and the kernel's `dev_valid_name`): 1 to 15 bytes, not `.` or `..`, no `/`,
/// `:`, NUL or whitespace.
pub fn ifname(name: &str) -> Result<(), InvalidName> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.len() > IFNAME_MAX {
        "it is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "it may not be '.' or '..'"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        "it may not hold '/', ':', NUL or whitespace"
    } else {
        return Ok(());
    };
    Err(invalid("interface name", name, why))
}

/// A network name used as a directory or file name (host-local's `dataDir/<name>`): non-empty, not `.` or
/// `..`, no `/` or NUL.
pub fn network_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(invalid(
            "network name",
            name,
            "it must be non-empty, not '.' or '..', without '/' or NUL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        for ok in ["a", "0abc", "a.b-c_d"] {
            container_id(ok).unwrap();
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "a;b", "ä", "a@b"] {
            assert!(container_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ifnames() {
        for ok in ["eth0", "net1", "a", "123456789012345", "a@b", "a-b"] {
            ifname(ok).unwrap();
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\0b",
            "1234567890123456",
        ] {
            assert!(ifname(bad).is_err(), "{bad:?}");
        }
        let huge = "x".repeat(65_536);
        let e = ifname(&huge).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
        assert_eq!(CniError::from(e).code.code(), 4);
    }

    #[test]
    fn network_names() {
        network_name("macvlan-conf").unwrap();
        for bad in ["", ".", "..", "a/b", "a\0"] {
            assert!(network_name(bad).is_err(), "{bad:?}");
        }
    }
}
