#!/usr/bin/env python3
"""The e2e cluster's two other images, made here since nothing can be pulled:

- e2e.local/pause:1, the sandbox image: a static Go program that waits for a signal (what k8s' pause does);
- e2e.local/busybox:1, the workload image: Debian's busybox-static with a link per applet (sh, ip, sleep, ...).

    python3 tests/e2e/images.py --out DIR [--go /usr/lib/go-1.22/bin/go] [--gocache DIR]

Each is a docker-archive tarball in DIR (written by deploy/image.py's functions), made only when missing.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "deploy"))
import image  # noqa: E402

PAUSE_REF = "e2e.local/pause:1"
BUSYBOX_REF = "e2e.local/busybox:1"

PAUSE_GO = """package main

// The pod sandbox's process: holds the namespaces until it is told to stop.
import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	<-c
}
"""


def pause(out, go, gocache):
    with tempfile.TemporaryDirectory() as d:
        src = pathlib.Path(d) / "pause.go"
        src.write_text(PAUSE_GO)
        binary = pathlib.Path(d) / "pause"
        env = dict(os.environ, CGO_ENABLED="0", GO111MODULE="off", GOTOOLCHAIN="local", GOPROXY="off",
                   GOCACHE=gocache, GOPATH=str(pathlib.Path(d) / "gopath"))
        subprocess.run([go, "build", "-ldflags", "-s -w", "-o", str(binary), str(src)], env=env, check=True)
        layer = image.layer_tar([("/pause", binary)])
    image.docker_archive(out, PAUSE_REF, layer, entrypoint=["/pause"])


def busybox(out):
    applets = subprocess.run(["/bin/busybox", "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    links = [("/" + a, "/bin/busybox") for a in applets if a != "bin/busybox"]
    layer = image.layer_tar([("/bin/busybox", "/bin/busybox")], links)
    image.docker_archive(out, BUSYBOX_REF, layer, cmd=["/bin/sh"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--go", default="/usr/lib/go-1.22/bin/go")
    p.add_argument("--gocache", default=os.path.expanduser("~/.cache/go-build"))
    a = p.parse_args(argv)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "pause.tar").exists():
        pause(out / "pause.tar", a.go, a.gocache)
    if not (out / "busybox.tar").exists():
        busybox(out / "busybox.tar")
    return 0


if __name__ == "__main__":
    sys.exit(main())
