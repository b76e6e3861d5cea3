"""The image: deploy/Dockerfile's final stage is the one definition that `docker build` and deploy/image.py (the
e2e test's image, built without a container engine) both follow."""
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


def test_the_image_holds_every_library_the_binary_links(tmp_path):
    """`ldd` of the binary names only files the final stage copies (a FROM scratch image has nothing else), and
    the loader is at the path the binary asks for."""
    repo_bin = DEPLOY.parent / "target" / "release" / "multus"
    binary = repo_bin if repo_bin.exists() else pathlib.Path("/bin/true")  # same libc, libgcc_s, loader set
    dests = {d for d, _ in image.layer_files(image.final_stage(), "/t")}
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("linux-vdso"):
            continue
        name = parts[0]
        if name.startswith("/"):
            assert name in dests, f"{binary} asks for the loader {name}, which the image does not have"
        else:
            assert f"/lib/x86_64-linux-gnu/{name}" in dests, f"{binary} links {name}, which the image does not have"


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
