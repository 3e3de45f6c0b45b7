//! `nbd://HOST[:PORT]/EXPORT` and `nbd+unix:///EXPORT?socket=PATH`, as in
//! the NBD URI specification (doc/uri.md of the NBD project) and QEMU.

use std::fmt;
use std::path::PathBuf;

/// The IANA port of NBD.
pub const DEFAULT_PORT: u16 = 10809;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A host name or address and a port.
    Tcp { host: String, port: u16 },
    /// A UNIX socket path.
    Unix(PathBuf),
}

/// A parsed NBD URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NbdUri {
    pub address: Address,
    /// The export name ("" is the server's default export).
    pub export: String,
}

impl fmt::Display for NbdUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Address::Tcp { host, port } if host.contains(':') => {
                write!(f, "nbd://[{host}]:{port}/{}", self.export)
            }
            Address::Tcp { host, port } => write!(f, "nbd://{host}:{port}/{}", self.export),
            Address::Unix(p) => write!(f, "nbd+unix:///{}?socket={}", self.export, p.display()),
        }
    }
}

/// Is `s` meant as an NBD URI (so that errors mention NBD, not files)?
pub fn is_nbd_uri(s: &str) -> bool {
    s.starts_with("nbd://") || s.starts_with("nbd+unix://") || s.starts_with("nbds")
}

/// Decode `%XX` escapes (export names and paths may contain them).
fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in '{s}'"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("'{s}' is not UTF-8 once unescaped"))
}

/// Parse an NBD URI. TLS (`nbds://`) is not supported.
pub fn parse(s: &str) -> Result<NbdUri, String> {
    if s.starts_with("nbds") {
        return Err(format!("{s}: NBD over TLS is not supported"));
    }
    let (unix, rest) = if let Some(r) = s.strip_prefix("nbd+unix://") {
        (true, r)
    } else if let Some(r) = s
        .strip_prefix("nbd+tcp://")
        .or_else(|| s.strip_prefix("nbd://"))
    {
        (false, r)
    } else {
        return Err(format!(
            "{s}: not an NBD URI (nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)"
        ));
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let export = unescape(path)?;
    if export.len() > 4096 {
        return Err(format!("{s}: the export name is longer than 4096 bytes"));
    }
    let mut socket = None;
    for kv in query.unwrap_or("").split('&').filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some(("socket", v)) => socket = Some(PathBuf::from(unescape(v)?)),
            _ => return Err(format!("{s}: unknown query parameter '{kv}'")),
        }
    }
    let address = if unix {
        if !authority.is_empty() {
            return Err(format!(
                "{s}: nbd+unix:// takes no host (nbd+unix:///EXPORT?socket=PATH)"
            ));
        }
        Address::Unix(socket.ok_or_else(|| format!("{s}: nbd+unix:// needs ?socket=PATH"))?)
    } else {
        if socket.is_some() {
            return Err(format!("{s}: ?socket= is only for nbd+unix://"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s}: unterminated [IPv6] host"))?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{s}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{s}: bad port '{p}'"))?,
            None => DEFAULT_PORT,
        };
        Address::Tcp {
            host: host.to_string(),
            port,
        }
    };
    Ok(NbdUri { address, export })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16, export: &str) -> NbdUri {
        NbdUri {
            address: Address::Tcp {
                host: host.into(),
                port,
            },
            export: export.into(),
        }
    }

    #[test]
    fn tcp_uris() {
        assert_eq!(
            parse("nbd://127.0.0.1:1234/disk").unwrap(),
            tcp("127.0.0.1", 1234, "disk")
        );
        assert_eq!(
            parse("nbd://localhost/").unwrap(),
            tcp("localhost", DEFAULT_PORT, "")
        );
        assert_eq!(
            parse("nbd://localhost").unwrap(),
            tcp("localhost", DEFAULT_PORT, "")
        );
        assert_eq!(
            parse("nbd://[::1]:99/a%20b").unwrap(),
            tcp("::1", 99, "a b")
        );
        assert_eq!(parse("nbd://h/a/b").unwrap(), tcp("h", DEFAULT_PORT, "a/b"));
        assert_eq!(parse("nbd://h:99/x").unwrap().to_string(), "nbd://h:99/x");
    }

    #[test]
    fn unix_uris() {
        let u = parse("nbd+unix:///exp?socket=/tmp/s.sock").unwrap();
        assert_eq!(u.address, Address::Unix("/tmp/s.sock".into()));
        assert_eq!(u.export, "exp");
        let u = parse("nbd+unix:///?socket=/tmp/s").unwrap();
        assert_eq!(u.export, "");
        assert_eq!(u.to_string(), "nbd+unix:///?socket=/tmp/s");
    }

    #[test]
    fn bad_uris() {
        for s in [
            "nbd+unix:///exp",
            "nbd+unix://host/exp?socket=/s",
            "nbd://:10/x",
            "nbd://h:0/x",
            "nbd://h:99999/x",
            "nbd://h:x/x",
            "nbd://h/x?socket=/s",
            "nbd://h/x?foo=1",
            "nbds://h/x",
            "nbd://[::1/x",
            "nbd://h/%zz",
            "file:///x",
        ] {
            assert!(parse(s).is_err(), "{s}");
        }
        assert!(
            is_nbd_uri("nbd://x") && is_nbd_uri("nbd+unix:///?socket=a") && !is_nbd_uri("/tmp/nbd")
        );
    }
}
