#!/usr/bin/env python3
"""Writes a minimal OCI image archive (an OCI image layout in a tar) without any container engine.

    oci.py --binary PATH --name kafka-gateway --tag REPO:0.1.0 --out FILE.tar
           [--label KEY=VALUE ...] [--env KEY=VALUE ...] [--port 9092/tcp ...] [--cmd ARG ...]
           [--created RFC3339] [--user 65532:65532]

The root filesystem has no shell and no package manager: the binary in /usr/local/bin, the shared
libraries `ldd` says it loads (at the paths the dynamic loader looks them up), /etc/passwd and
/etc/group naming the numeric non-root user, /etc/nsswitch.conf, and an empty /tmp. Two layers:
the libraries and files (shared by both images, so a registry stores them once) and the binary.
Every entry has owner 0:0 and the mtime of --created, so the same inputs give the same digests.
Standard library only.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from datetime import datetime, timezone

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


def fail(msg):
    print(f"oci.py: {msg}", file=sys.stderr)
    sys.exit(1)


def shared_libraries(binary):
    """Absolute paths of what the dynamic loader loads for `binary`, loader included."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if out.returncode != 0:
        if "not a dynamic executable" in out.stdout + out.stderr:
            return []
        fail(f"ldd {binary} failed: {out.stderr.strip()}")
    libs = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            fail(f"{binary} needs a library that is not installed: {line}")
        if "=>" in line:
            path = line.split("=>", 1)[1].split("(")[0].strip()
        else:
            path = line.split("(")[0].strip()
        if path.startswith("/"):
            libs.append(path)
    return libs


class Layer:
    """A tar layer built in memory with fixed owners and times."""

    def __init__(self, mtime):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.mtime = mtime
        self.dirs = set()

    def _info(self, name, kind, mode):
        info = tarfile.TarInfo(name.lstrip("/"))
        info.type = kind
        info.mode = mode
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = self.mtime
        return info

    def dir(self, path, mode=0o755):
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d and d not in self.dirs:
                self.dirs.add(d)
                self.tar.addfile(self._info(d, tarfile.DIRTYPE, mode if i == len(parts) else 0o755))

    def file(self, path, data, mode=0o644):
        self.dir(os.path.dirname(path))
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, path, target):
        self.dir(os.path.dirname(path))
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def finish(self):
        """(gzip blob, its sha256, sha256 of the uncompressed tar = the diff id)."""
        self.tar.close()
        raw = self.buf.getvalue()
        gz = io.BytesIO()
        # mtime=0 and no file name: the compressed bytes depend on the content only.
        with gzip.GzipFile(fileobj=gz, mode="wb", compresslevel=9, mtime=0, filename="") as z:
            z.write(raw)
        blob = gz.getvalue()
        return blob, hashlib.sha256(blob).hexdigest(), hashlib.sha256(raw).hexdigest()


def add_library(layer, path, seen):
    """The library at `path` and, when `path` is a symlink, the links leading to the real file."""
    while path not in seen:
        seen.add(path)
        if os.path.islink(path):
            target = os.readlink(path)
            layer.symlink(path, target)
            path = os.path.normpath(os.path.join(os.path.dirname(path), target))
            continue
        with open(path, "rb") as f:
            layer.file(path, f.read(), 0o755)
        return


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--binary", required=True)
    p.add_argument("--name", required=True, help="the image's repository name, also the program name")
    p.add_argument("--tag", required=True, help="the full reference the archive names (one: podman load takes one)")
    p.add_argument("--out", required=True)
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--port", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--created", default="1970-01-01T00:00:00Z")
    p.add_argument("--user", default="65532:65532")
    a = p.parse_args()

    created = datetime.strptime(a.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    mtime = int(created.timestamp())
    uid, gid = a.user.split(":")
    if not (uid.isdigit() and gid.isdigit()) or uid == "0":
        fail(f"--user must be numeric and not root, got {a.user}")

    base = Layer(mtime)
    base.file("/etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{uid}:{gid}:nonroot:/home/nonroot:/sbin/nologin\n".encode())
    base.file("/etc/group", f"root:x:0:\nnonroot:x:{gid}:\n".encode())
    # No nsswitch.conf makes glibc try DNS before /etc/hosts; Kubernetes writes both files.
    base.file("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    base.dir("/tmp", 0o1777)
    base.dir("/home/nonroot", 0o755)
    seen = set()
    for lib in shared_libraries(a.binary):
        add_library(base, lib, seen)
    app = Layer(mtime)
    with open(a.binary, "rb") as f:
        app.file(f"/usr/local/bin/{a.name}", f.read(), 0o755)

    layers = [base.finish(), app.finish()]
    labels = dict(kv.split("=", 1) for kv in a.label)
    config = {
        "created": a.created,
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "User": a.user,
            "Entrypoint": [f"/usr/local/bin/{a.name}"],
            "Env": ["PATH=/usr/local/bin"] + a.env,
            "WorkingDir": "/",
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for _, _, d in layers]},
        "history": [
            {"created": a.created, "created_by": "images/oci.py: shared libraries, /etc, /tmp"},
            {"created": a.created, "created_by": f"images/oci.py: /usr/local/bin/{a.name}"},
        ],
    }
    if a.cmd:
        config["config"]["Cmd"] = a.cmd
    if a.port:
        config["config"]["ExposedPorts"] = {port: {} for port in a.port}
    config_blob = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    config_digest = hashlib.sha256(config_blob).hexdigest()
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": f"sha256:{config_digest}", "size": len(config_blob)},
        "layers": [
            {"mediaType": MEDIA_LAYER, "digest": f"sha256:{digest}", "size": len(blob)}
            for blob, digest, _ in layers
        ],
        "annotations": labels,
    }
    manifest_blob = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    manifest_digest = hashlib.sha256(manifest_blob).hexdigest()
    # One entry: `podman load` refuses an archive with more ("more than one image in oci"); it
    # reads the OCI ref name, `ctr images import` the containerd image name.
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": f"sha256:{manifest_digest}",
                "size": len(manifest_blob),
                "annotations": {"org.opencontainers.image.ref.name": a.tag, "io.containerd.image.name": a.tag},
            }
        ],
    }
    blobs = {config_digest: config_blob, manifest_digest: manifest_blob}
    for blob, digest, _ in layers:
        blobs[digest] = blob

    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as out:
        def put(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = 0o644
            out.addfile(info, io.BytesIO(data))

        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = mtime
            out.addfile(info)
        put("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        put("index.json", json.dumps(index, sort_keys=True, separators=(",", ":")).encode())
        for digest in sorted(blobs):
            put(f"blobs/sha256/{digest}", blobs[digest])
    os.replace(tmp, a.out)
    size = sum(len(b) for b, _, _ in layers) + len(config_blob)
    print(json.dumps({"archive": a.out, "manifest": f"sha256:{manifest_digest}", "compressed_bytes": size,
                      "uncompressed_bytes": sum(len(x.buf.getvalue()) for x in (base, app))}))


if __name__ == "__main__":
    main()
