"""The images: the final stage of deploy/Dockerfile (thin) and of deploy/Dockerfile.thick (multus-daemon + the
shim) is the one definition of each that `docker build` and deploy/image.py (the e2e test's images, built without
a container engine) both follow."""
import io
import json
import pathlib
import subprocess
import sys
import tarfile

import pytest

DEPLOY = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(DEPLOY))
import image  # noqa: E402


def test_the_final_stage_is_what_image_py_reproduces():
    stage = image.final_stage()
    assert stage["from"] == "scratch"
    assert stage["entrypoint"] == ["/usr/bin/multus"]
    assert stage["cmd"][0] == "install"
    dests = [d for d, _ in image.layer_files(stage, "/t")]
    assert "/usr/bin/multus" in dests
    assert ("/usr/bin/multus", pathlib.Path("/t/release/multus")) in image.layer_files(stage, "/t")


@pytest.mark.parametrize("line", ["RUN echo hi", "COPY multus /usr/bin/multus", "ENV A=b", "USER 1000"])
def test_a_final_stage_image_py_cannot_reproduce_is_refused(tmp_path, line):
    f = tmp_path / "Dockerfile"
    f.write_text("FROM x AS build\nRUN true\n\nFROM scratch\n" + line + "\nENTRYPOINT [\"/a\"]\n")
    with pytest.raises(ValueError):
        image.final_stage(f)
    f.write_text("FROM x AS build\nFROM debian:bookworm-slim\nENTRYPOINT [\"/a\"]\n")
    with pytest.raises(ValueError):
        image.final_stage(f)


def test_the_thick_final_stage_is_what_image_py_reproduces():
    stage = image.final_stage(image.DOCKERFILE_THICK)
    assert stage["from"] == "scratch"
    assert stage["entrypoint"] == ["/usr/bin/multus-daemon"]
    assert stage["cmd"] == ["-config", "/etc/cni/net.d/multus.d/daemon-config.json"]
    files = image.layer_files(stage, "/t")
    assert ("/usr/bin/multus-daemon", pathlib.Path("/t/release/multus-daemon")) in files
    # the shim: the daemon copies the `multus` beside it to the host
    assert ("/usr/bin/multus", pathlib.Path("/t/release/multus")) in files
    # CNI_NETNS (/var/run/netns/...) is opened in the daemon's container, where the host's /run/netns is mounted
    assert image.layer_symlinks(stage, "/t") == [("/var/run", "/run")]


def image_binaries():
    """(Dockerfile, path of a binary in its image, that binary here): each image's binaries, or /bin/true (the
    same libc, libgcc_s and loader set) when not built."""
    out = []
    for dockerfile in (image.DOCKERFILE, image.DOCKERFILE_THICK):
        for dest, src in image.layer_files(image.final_stage(dockerfile), DEPLOY.parent / "target"):
            if dest.startswith("/usr/bin/"):
                out.append((dockerfile.name, dest, src if src.exists() else pathlib.Path("/bin/true")))
    return out


@pytest.mark.parametrize("dockerfile, dest, binary", image_binaries())
def test_the_image_holds_every_library_the_binary_links(dockerfile, dest, binary):
    """`ldd` of each binary names only files its image's final stage copies (a FROM scratch image has nothing
    else), and the loader is at the path the binary asks for."""
    dests = {d for d, _ in image.layer_files(image.final_stage(image.HERE / dockerfile), "/t")}
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("linux-vdso"):
            continue
        name = parts[0]
        if name.startswith("/"):
            assert name in dests, f"{binary} ({dest}) asks for the loader {name}, which {dockerfile}'s image lacks"
        else:
            assert f"/lib/x86_64-linux-gnu/{name}" in dests, f"{binary} ({dest}) links {name}: not in {dockerfile}'s"


def test_image_py_writes_the_thick_image(tmp_path):
    """The thick image from this machine's files: both binaries, the libraries, the loader, /var/run -> /run."""
    target = tmp_path / "target"
    (target / "release").mkdir(parents=True)
    for name in ("multus", "multus-daemon"):
        (target / "release" / name).write_bytes(pathlib.Path("/bin/true").read_bytes())
        (target / "release" / name).chmod(0o755)
    out = tmp_path / "thick.tar"
    assert image.main(["--dockerfile", str(image.DOCKERFILE_THICK), "--tag", "e2e.local/t:1", "--out", str(out),
                       "--target-dir", str(target)]) == 0
    with tarfile.open(out) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        config = json.load(t.extractfile(manifest[0]["Config"]))
        assert config["config"]["Entrypoint"] == ["/usr/bin/multus-daemon"]
        with tarfile.open(fileobj=io.BytesIO(t.extractfile(manifest[0]["Layers"][0]).read())) as lt:
            names = set(lt.getnames())
            assert {"usr/bin/multus", "usr/bin/multus-daemon", "lib64/ld-linux-x86-64.so.2",
                    "lib/x86_64-linux-gnu/libc.so.6"} <= names
            run = lt.getmember("var/run")
            assert run.issym() and run.linkname == "/run"


def test_the_archive_is_a_loadable_docker_archive(tmp_path):
    """manifest.json, the config with the Dockerfile's ENTRYPOINT/CMD, one layer whose digest the config names."""
    src = tmp_path / "hello"
    src.write_bytes(b"#!/bin/sh\n")
    src.chmod(0o755)
    layer = image.layer_tar([("/usr/bin/hello", src)], [("/bin/hi", "/usr/bin/hello")])
    out = tmp_path / "img.tar"
    diff_id = image.docker_archive(out, "e2e.local/x:1", layer, entrypoint=["/usr/bin/hello"], cmd=["a"])
    with tarfile.open(out) as t:
        manifest = json.load(t.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["e2e.local/x:1"]
        config = json.load(t.extractfile(manifest[0]["Config"]))
        assert config["rootfs"]["diff_ids"] == [diff_id]
        assert config["config"]["Entrypoint"] == ["/usr/bin/hello"] and config["config"]["Cmd"] == ["a"]
        with tarfile.open(fileobj=io.BytesIO(t.extractfile(manifest[0]["Layers"][0]).read())) as lt:
            names = lt.getnames()
            assert names[:2] == ["bin", "usr"] and "usr/bin/hello" in names
            assert lt.getmember("usr/bin/hello").mode == 0o755
            assert lt.getmember("bin/hi").issym()
