//! Pure parts of the runner: which binary an image maps to, `$(VAR)` expansion, and how
//! container addresses are rewritten to loopback host ports.

use std::collections::BTreeMap;

/// The repository name of an image reference without registry, tag or digest:
/// `ghcr.io/acme/kafka-gateway:0.1.0@sha256:..` → `kafka-gateway`.
pub fn image_name(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    let last = no_digest.rsplit('/').next().unwrap_or(no_digest);
    last.split(':').next().unwrap_or(last)
}

/// The argv of a container: the image's binary (the only entrypoint our images have) followed by
/// `command[1..]` and `args`, as Kubernetes combines them. `command[0]`, when given, must name
/// the same binary: the runner never runs anything but our own binaries.
pub fn argv(
    binaries: &BTreeMap<String, String>,
    image: &str,
    command: &[String],
    args: &[String],
) -> Result<Vec<String>, String> {
    let name = image_name(image);
    let bin = binaries.get(name).ok_or_else(|| {
        format!(
            "image {image:?} is not one of our binaries ({})",
            binaries.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let mut out = vec![bin.clone()];
    if let Some(first) = command.first() {
        let base = first.rsplit('/').next().unwrap_or(first);
        if base != name {
            return Err(format!(
                "command {first:?} is not the image's binary {name:?}"
            ));
        }
        out.extend(command[1..].iter().cloned());
    }
    out.extend(args.iter().cloned());
    Ok(out)
}

/// Kubernetes' `$(VAR)` expansion: defined variables are replaced, undefined references are kept
/// as written, and `$$` is a literal `$`.
pub fn expand(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether `host` names this pod from inside the cluster: a wildcard or loopback bind address,
/// or a cluster DNS name (`….svc`, `….svc.cluster.local`). With no cluster network, each such
/// address is the pod's own port mapped to loopback.
fn is_pod_local(host: &str) -> bool {
    matches!(
        host,
        "" | "0.0.0.0" | "[::]" | "::" | "localhost" | "127.0.0.1"
    ) || host.ends_with(".svc")
        || host.ends_with(".svc.cluster.local")
}

/// Rewrites every `HOST:PORT` in `s` whose PORT is a container port and whose HOST is pod-local
/// (see `is_pod_local`) to `127.0.0.1:<host port>`.
/// `s` with a leading mount path (`/var/lib/x` or `/var/lib/x/...`) replaced by the folder that
/// stands in for that volume.
pub fn map_mounts(s: &str, mounts: &[(String, std::path::PathBuf)]) -> String {
    for (path, host) in mounts {
        let path = path.trim_end_matches('/');
        if let Some(rest) = s.strip_prefix(path)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return format!("{}{rest}", host.display());
        }
    }
    s.to_string()
}

pub fn map_ports(s: &str, ports: &BTreeMap<i32, u16>) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b':' {
            let digits_end = (i + 1..bytes.len())
                .find(|&j| !bytes[j].is_ascii_digit())
                .unwrap_or(bytes.len());
            if digits_end > i + 1
                && let Ok(port) = s[i + 1..digits_end].parse::<i32>()
                && let Some(host_port) = ports.get(&port)
            {
                let host_start = s[..i]
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || ".-[]:_".contains(c)))
                    .map(|j| j + 1)
                    .unwrap_or(0);
                let host_start = host_start.max(copied);
                let host = &s[host_start..i];
                if is_pod_local(host) {
                    out.push_str(&s[copied..host_start]);
                    out.push_str(&format!("127.0.0.1:{host_port}"));
                    copied = digits_end;
                    i = digits_end;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&s[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins() -> BTreeMap<String, String> {
        BTreeMap::from([("kafka-gateway".into(), "/t/kafka-gateway".into())])
    }

    #[test]
    fn only_our_binaries_run() {
        assert_eq!(
            image_name("ghcr.io/a/kafka-gateway:0.1@sha256:ab"),
            "kafka-gateway"
        );
        assert_eq!(image_name("kafka-gateway"), "kafka-gateway");
        let args = vec!["serve".to_string()];
        assert_eq!(
            argv(&bins(), "reg:5000/kafka-gateway:1", &[], &args).unwrap(),
            vec!["/t/kafka-gateway", "serve"]
        );
        assert!(argv(&bins(), "busybox", &[], &args).is_err());
        assert!(argv(&bins(), "kafka-gateway", &["/bin/sh".into()], &args).is_err());
        assert_eq!(
            argv(
                &bins(),
                "kafka-gateway",
                &["/usr/bin/kafka-gateway".into(), "serve".into()],
                &["--x".into()]
            )
            .unwrap(),
            vec!["/t/kafka-gateway", "serve", "--x"]
        );
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let vars = BTreeMap::from([("POD_NAME".to_string(), "gw-0".to_string())]);
        assert_eq!(expand("$(POD_NAME).gw-brokers", &vars), "gw-0.gw-brokers");
        assert_eq!(
            expand("$(NOPE)-$$(POD_NAME)-$", &vars),
            "$(NOPE)-$(POD_NAME)-$"
        );
    }

    #[test]
    fn paths_under_a_mount_map_to_the_pods_folder() {
        let mounts = [(
            "/var/lib/kafka-gateway".to_string(),
            std::path::PathBuf::from("/tmp/pod/volumes/wal"),
        )];
        assert_eq!(
            map_mounts("/var/lib/kafka-gateway/wal", &mounts),
            "/tmp/pod/volumes/wal/wal"
        );
        assert_eq!(
            map_mounts("/var/lib/kafka-gateway", &mounts),
            "/tmp/pod/volumes/wal"
        );
        assert_eq!(
            map_mounts("/var/lib/kafka-gateway2", &mounts),
            "/var/lib/kafka-gateway2"
        );
        assert_eq!(map_mounts("--wal", &mounts), "--wal");
    }

    #[test]
    fn pod_local_addresses_map_to_loopback() {
        let ports = BTreeMap::from([(9092, 40001u16), (8080, 40002u16)]);
        assert_eq!(map_ports("0.0.0.0:9092", &ports), "127.0.0.1:40001");
        assert_eq!(
            map_ports("--http=0.0.0.0:8080", &ports),
            "--http=127.0.0.1:40002"
        );
        assert_eq!(
            map_ports("gw-0.gw-brokers.ns.svc:9092", &ports),
            "127.0.0.1:40001"
        );
        assert_eq!(map_ports("[::]:8080", &ports), "127.0.0.1:40002");
        // Other hosts and other ports stay as they are.
        assert_eq!(map_ports("10.1.2.3:9092", &ports), "10.1.2.3:9092");
        assert_eq!(map_ports("0.0.0.0:90921", &ports), "0.0.0.0:90921");
        assert_eq!(
            map_ports("127.0.0.1:19333", &ports),
            "127.0.0.1:19333",
            "SMQ's address is left alone"
        );
    }
}
