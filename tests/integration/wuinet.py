"""Network namespaces for the kernel and firewall integration tests; all named `<PREFIX>-*`.

The prefix is derived from this checkout's path, like the lab's, so two checkouts (worktrees)
running these tests at once never delete each other's namespaces.
"""
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

PREFIX = "wn" + hashlib.sha1(str(Path(__file__).resolve().parents[2]).encode()).hexdigest()[:4]

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="SKIPPED: NOT ROOT. These tests create network namespaces and nftables rules and prove "
           "the kernel and firewall drivers for real; run them as root (CI does).")


def run(*argv, ns=None, check=True, stdin=None):
    if ns:
        argv = ("ip", "netns", "exec", ns) + argv
    result = subprocess.run(argv, capture_output=True, text=True, input=stdin, timeout=20)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def delete_namespaces(names=None):
    """Idempotent: deletes the given (or every leftover) namespace of this checkout that exists."""
    listed = run("ip", "netns", "list").stdout.split()
    present = {n for n in listed if n.startswith(PREFIX + "-")}
    for name in present if names is None else present & set(names):
        run("ip", "netns", "del", name, check=False)


def make_namespaces(*names):
    delete_namespaces(names)
    for name in names:
        run("ip", "netns", "add", name)
        run("ip", "link", "set", "lo", "up", ns=name)


def ping(ns, target):
    return run("ping", "-c", "1", "-W", "1", target, ns=ns, check=False).returncode == 0
