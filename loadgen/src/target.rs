//! The target URL: where to connect, and the path template `{key}` fills.
//!
//! ```
//! use loadgen::target::Target;
//! let target = Target::parse("http://127.0.0.1:8080/ratelimit/{key}").unwrap();
//! assert_eq!(target.port, 8080);
//! assert_eq!(target.path_parts, vec!["/ratelimit/".to_string(), String::new()]);
//! ```
//!
//! A load generator pointed at the wrong host is a denial-of-service tool,
//! so [`Target::check_loopback`] refuses anything but this machine unless the
//! user says `--allow-remote`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// What stands in the path for the key of each request.
pub const KEY_PLACEHOLDER: &str = "{key}";
/// Longest URL accepted; a request line longer than this is a mistake.
const URL_BYTES_MAX: usize = 8 * 1024;

/// A parsed `http://host[:port]/path?query` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The host as written, without brackets around an IPv6 literal.
    pub host: String,
    pub port: u16,
    /// The `Host` header: the authority as written in the URL.
    pub authority: String,
    /// The path and query split at each `{key}`: one more part than there are
    /// placeholders, so a path without `{key}` is a single part.
    pub path_parts: Vec<String>,
}

impl Target {
    /// Parses an `http://` URL; `https`, user info and fragments are refused.
    pub fn parse(url: &str) -> Result<Target, String> {
        if url.len() > URL_BYTES_MAX {
            return Err(format!("the URL is longer than {URL_BYTES_MAX} bytes"));
        }
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => return Err("https is not supported; use http://".into()),
            Some(("ws" | "wss", _)) => {
                return Err("a WebSocket URL needs `loadgen ws`, not `loadgen http`".into())
            }
            Some((scheme, _)) => return Err(format!("unsupported scheme `{scheme}`; use http://")),
            None => {
                return Err(format!(
                    "`{url}` is not a URL (e.g. http://127.0.0.1:8080/)"
                ))
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(slash) => rest.split_at(slash),
            None => (rest, "/"),
        };
        let path = if let Some(query) = path.strip_prefix('?') {
            format!("/?{query}")
        } else {
            path.to_string()
        };
        if path.contains('#') {
            return Err("a URL fragment (`#...`) is never sent; remove it".into());
        }
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err("the path must not contain spaces or control characters".into());
        }
        if authority.contains('@') {
            return Err("user info in the URL is not supported".into());
        }
        let (host, port) = split_authority(authority)?;
        let path_parts = path.split(KEY_PLACEHOLDER).map(str::to_string).collect();
        Ok(Target {
            host,
            port,
            authority: authority.to_string(),
            path_parts,
        })
    }

    /// A bare `host:port` address (for RPC), with the port required; the
    /// path is `/` and has no key.
    pub fn parse_addr(text: &str) -> Result<Target, String> {
        if text.len() > URL_BYTES_MAX || text.contains(['/', '?', '#', '@']) || text.contains("://")
        {
            return Err(format!(
                "`{text}` is not an address: use host:port, e.g. 127.0.0.1:7070"
            ));
        }
        let has_port = match text.rsplit_once(':') {
            Some((host, _)) => !host.is_empty() && (!host.starts_with('[') || host.ends_with(']')),
            None => false,
        };
        if !has_port {
            return Err(format!(
                "`{text}` needs a port: use host:port, e.g. 127.0.0.1:7070"
            ));
        }
        let (host, port) = split_authority(text)?;
        Ok(Target {
            host,
            port,
            authority: text.to_string(),
            path_parts: vec!["/".to_string()],
        })
    }

    /// Whether the path has a `{key}` for the key distribution to fill.
    pub fn has_key(&self) -> bool {
        self.path_parts.len() > 1
    }

    /// Refuses any host but this machine: an address in 127.0.0.0/8, `::1`,
    /// or the name `localhost`.
    pub fn check_loopback(&self) -> Result<(), String> {
        let loopback = match self.host.parse::<IpAddr>() {
            Ok(ip) => is_loopback(ip),
            Err(_) => self.host.eq_ignore_ascii_case("localhost"),
        };
        if loopback {
            Ok(())
        } else {
            Err(format!(
                "refusing to load `{}`, which is not this machine (127.0.0.0/8, ::1, localhost); \
                 pass --allow-remote if you mean it",
                self.host
            ))
        }
    }

    /// The address to connect to. `localhost` resolves to 127.0.0.1 without
    /// asking the resolver, since that is what a server on "localhost" most
    /// often listens on; other names take the resolver's first IPv4 address,
    /// or its first address of any family.
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        if self.host.eq_ignore_ascii_case("localhost") {
            return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port));
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|err| format!("cannot resolve `{}`: {err}", self.host))?
            .collect();
        addrs
            .iter()
            .find(|addr| addr.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("`{}` resolves to no address", self.host))
    }
}

fn split_authority(authority: &str) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("the URL has no host".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 host needs its closing `]`")?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`[{host}]` is not an IPv6 address"));
        }
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(format!("unexpected `{after}` after the IPv6 host")),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    let port = match port {
        None => 80,
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err(format!("`{text}` is not a port number (1-65535)")),
        },
    };
    Ok((host.to_string(), port))
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        // An IPv4-mapped 127.x address is loopback too.
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_path_at_each_key() {
        let target = Target::parse("http://127.0.0.1:8080/ratelimit/{key}?x={key}&y").unwrap();
        assert_eq!(target.host, "127.0.0.1");
        assert_eq!(target.port, 8080);
        assert_eq!(target.authority, "127.0.0.1:8080");
        assert_eq!(target.path_parts, ["/ratelimit/", "?x=", "&y"]);
        assert!(target.has_key());

        let plain = Target::parse("http://localhost").unwrap();
        assert_eq!(plain.port, 80);
        assert_eq!(plain.path_parts, ["/"]);
        assert!(!plain.has_key());

        let query = Target::parse("http://localhost:1?a=b").unwrap();
        assert_eq!(query.path_parts, ["/?a=b"]);
    }

    #[test]
    fn reads_ipv6_literals() {
        let target = Target::parse("http://[::1]:9000/x").unwrap();
        assert_eq!(target.host, "::1");
        assert_eq!(target.port, 9000);
        assert_eq!(target.authority, "[::1]:9000");
        assert_eq!(
            target.resolve().unwrap(),
            "[::1]:9000".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(Target::parse("http://[::1]/").unwrap().port, 80);
    }

    #[test]
    fn refuses_malformed_urls() {
        for bad in [
            "127.0.0.1:8080/",
            "https://127.0.0.1/",
            "ws://127.0.0.1/",
            "ftp://127.0.0.1/",
            "http://",
            "http://:80/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:99999/",
            "http://127.0.0.1:x/",
            "http://[::1/",
            "http://[nope]/",
            "http://u@127.0.0.1/",
            "http://127.0.0.1/a b",
            "http://127.0.0.1/#frag",
        ] {
            assert!(Target::parse(bad).is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn only_loopback_passes_without_allow_remote() {
        for ok in [
            "http://127.0.0.1/",
            "http://127.1.2.3:80/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://localhost:8080/",
            "http://LOCALHOST/",
        ] {
            assert_eq!(Target::parse(ok).unwrap().check_loopback(), Ok(()), "{ok}");
        }
        for remote in [
            "http://10.0.0.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://example.com/",
            "http://localhost.example.com/",
            "http://128.0.0.1/",
        ] {
            let err = Target::parse(remote).unwrap().check_loopback().unwrap_err();
            assert!(err.contains("--allow-remote"), "{remote}: {err}");
        }
    }

    #[test]
    fn reads_bare_addresses_with_ports() {
        let target = Target::parse_addr("127.0.0.1:7070").unwrap();
        assert_eq!((target.host.as_str(), target.port), ("127.0.0.1", 7070));
        assert_eq!(Target::parse_addr("[::1]:9").unwrap().host, "::1");
        assert_eq!(Target::parse_addr("localhost:1").unwrap().port, 1);
        for bad in [
            "127.0.0.1",
            "[::1]",
            ":7070",
            "http://127.0.0.1:7070",
            "127.0.0.1:7070/x",
            "127.0.0.1:0",
            "127.0.0.1:x",
            "",
        ] {
            assert!(
                Target::parse_addr(bad).is_err(),
                "`{bad}` should be refused"
            );
        }
    }

    #[test]
    fn localhost_resolves_to_ipv4_loopback() {
        let target = Target::parse("http://localhost:8080/").unwrap();
        assert_eq!(
            target.resolve().unwrap(),
            "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
        );
    }
}
