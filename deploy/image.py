#!/usr/bin/env python3
"""Builds the Multus (Rust) images without a container engine, from a Dockerfile's final stage.

    cargo build --release -p multus-cni
    python3 deploy/image.py --tag e2e.local/multus-rs:dev --out multus-image.tar
    ctr -n k8s.io images import multus-image.tar
    # the thick image (deploy/Dockerfile.thick)
    cargo build --release -p multus-cni && cargo build --release -p multus-daemon
    python3 deploy/image.py --dockerfile deploy/Dockerfile.thick --tag e2e.local/multus-rs:thick --out thick.tar

Each Dockerfile (deploy/Dockerfile, deploy/Dockerfile.thick) is the one definition of its image: its final stage is `FROM scratch` with COPY lines from the
build stage, ENTRYPOINT and CMD. This script reads that stage and writes the same filesystem and config as a
docker-archive tarball (what `docker save` writes; `ctr images import` and `docker load` read it), taking each
COPY source from this machine: the build stage's /src is the repository (its target/ or --target-dir), any other
path is this Debian machine's own file, which is the build stage's too (both Debian bookworm). A directory of the
repository (e.g. deploy/thick-rootfs/) is copied with its contents, symlinks kept, as Docker copies one. Files from
target/ are stripped as the build stage's RUN strips them. Anything else in the final stage is refused, so the
two cannot drift apart silently (deploy/tests/test_image.py).
"""
import argparse
import hashlib
import io
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
DOCKERFILE = HERE / "Dockerfile"
DOCKERFILE_THICK = HERE / "Dockerfile.thick"
BUILD_SRC = "/src"  # WORKDIR of the Dockerfile's build stage, where the repository is copied


def final_stage(dockerfile=DOCKERFILE):
    """The final stage of a Dockerfile: {"from": base, "copy": [(build stage sources, dest)], "entrypoint",
    "cmd"}. Continuation lines are joined, comments dropped; an instruction this script cannot reproduce
    raises ValueError."""
    lines, cur = [], ""
    for raw in pathlib.Path(dockerfile).read_text().splitlines():
        if not cur and raw.lstrip().startswith("#"):
            continue
        cur += raw.rstrip("\\").strip() + " " if raw.rstrip().endswith("\\") else raw.strip()
        if not raw.rstrip().endswith("\\"):
            if cur:
                lines.append(cur)
            cur = ""
    froms = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    if not froms:
        raise ValueError("no FROM in the Dockerfile")
    stage = {"from": lines[froms[-1]].split()[1], "copy": [], "entrypoint": None, "cmd": None}
    for line in lines[froms[-1] + 1:]:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "COPY":
            words = shlex.split(rest)
            if not words or not words[0].startswith("--from="):
                raise ValueError(f"only COPY --from=<build stage> is reproduced: {line}")
            srcs, dest = words[1:-1], words[-1]
            if not srcs:
                raise ValueError(f"COPY without a source: {line}")
            stage["copy"].append((srcs, dest))
        elif op in ("ENTRYPOINT", "CMD"):
            stage[op.lower()] = json.loads(rest)
        else:
            raise ValueError(f"instruction not reproduced by deploy/image.py: {line}")
    if stage["from"] != "scratch":
        raise ValueError(f"the final stage must be FROM scratch to be reproduced here, not {stage['from']}")
    return stage


def host_source(src, target_dir):
    """Where a build-stage path is on this machine."""
    if src == BUILD_SRC or src.startswith(BUILD_SRC + "/"):
        rel = src[len(BUILD_SRC) + 1:]
        if rel.startswith("target/"):
            return pathlib.Path(target_dir) / rel[len("target/"):]
        return REPO / rel
    return pathlib.Path(src)


def _copies(stage, target_dir):
    """(files, symlinks) of the stage's COPY lines as Docker places them: several sources or a dest ending in /
    go into that directory under their own names (a named source that is a symlink is followed); a repository
    directory's contents go under dest recursively, its symlinks kept as symlinks."""
    files, links = [], []
    for srcs, dest in stage["copy"]:
        into_dir = dest.endswith("/") or len(srcs) > 1
        for src in srcs:
            host = host_source(src, target_dir)
            if src.startswith(BUILD_SRC + "/") and host.is_dir() and not host.is_symlink():
                for entry in sorted(host.rglob("*")):
                    image_path = dest.rstrip("/") + "/" + entry.relative_to(host).as_posix()
                    if entry.is_symlink():
                        links.append((image_path, os.readlink(entry)))
                    elif entry.is_file():
                        files.append((image_path, entry))
                continue
            target = dest.rstrip("/") + "/" + pathlib.PurePosixPath(src).name if into_dir else dest
            files.append((target, host))
    return files, links


def layer_files(stage, target_dir):
    """[(path in the image, path on this machine)]: the files the stage's COPY lines put in the image."""
    return _copies(stage, target_dir)[0]


def layer_symlinks(stage, target_dir):
    """[(path in the image, link target)]: the symlinks of the directories the stage copies."""
    return _copies(stage, target_dir)[1]


def is_built(src, target_dir):
    return pathlib.Path(target_dir) in pathlib.Path(src).parents


def stripped(src, tmp):
    """A stripped copy of a built binary (the build stage runs `strip` on it)."""
    out = pathlib.Path(tmp) / pathlib.Path(src).name
    shutil.copy2(src, out)
    subprocess.run(["strip", str(out)], check=True)
    return out


def _tarinfo(name, **kw):
    ti = tarfile.TarInfo(name)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 0
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def layer_tar(files, symlinks=()):
    """An uncompressed layer: parent directories, then each (image path, host path) file (symlinks followed,
    mode kept), then each (image path, link target) symlink. Deterministic: sorted, mtime 0, root-owned."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        names = [p for p, _ in files] + [p for p, _ in symlinks]
        dirs = sorted({str(parent).lstrip("/") for n in names for parent in pathlib.PurePosixPath(n).parents
                       if str(parent) != "/"})
        for d in dirs:
            tar.addfile(_tarinfo(d, type=tarfile.DIRTYPE, mode=0o755))
        for dest, src in sorted(files):
            data = pathlib.Path(src).read_bytes()
            mode = os.stat(src).st_mode & 0o7777
            tar.addfile(_tarinfo(dest.lstrip("/"), size=len(data), mode=mode), io.BytesIO(data))
        for dest, target in sorted(symlinks):
            tar.addfile(_tarinfo(dest.lstrip("/"), type=tarfile.SYMTYPE, linkname=target, mode=0o777))
    return buf.getvalue()


def docker_archive(out, ref, layer, entrypoint=None, cmd=None, env=None):
    """Writes a one-layer docker-archive tarball (manifest.json, the config, the layer) tagged `ref`."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Entrypoint": entrypoint, "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "deploy/image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]).encode()
    tmp = pathlib.Path(str(out) + ".tmp")
    with tarfile.open(tmp, mode="w") as tar:
        for name, data in [(config_name, config_bytes), (layer_name, layer), ("manifest.json", manifest)]:
            tar.addfile(_tarinfo(name, size=len(data), mode=0o644), io.BytesIO(data))
    tmp.rename(out)
    return diff_id


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tag", required=True, help="the image reference, e.g. e2e.local/multus-rs:dev")
    p.add_argument("--out", required=True, help="the docker-archive tarball to write")
    p.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", str(REPO / "target")),
                   help="cargo's target directory (the build stage's /src/target)")
    p.add_argument("--dockerfile", default=str(DOCKERFILE))
    a = p.parse_args(argv)
    try:
        stage = final_stage(a.dockerfile)
    except ValueError as e:
        print(f"image.py: {a.dockerfile}: {e}", file=sys.stderr)
        return 1
    files, symlinks = _copies(stage, a.target_dir)
    missing = [str(src) for _, src in files if not src.is_file()]
    if missing:
        print(f"image.py: missing: {', '.join(missing)} (cargo build --release -p multus-cni"
              f"{' && cargo build --release -p multus-daemon' if 'thick' in a.dockerfile else ''}?)",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        files = [(dest, stripped(src, tmp) if is_built(src, a.target_dir) else src) for dest, src in files]
        layer = layer_tar(files, symlinks)
        diff_id = docker_archive(a.out, a.tag, layer, stage["entrypoint"], stage["cmd"])
    print(f"image.py: {a.tag} -> {a.out} (layer {diff_id[:19]}, {len(files)} files, {len(symlinks)} symlinks)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
