"""Why `chattr +i` was refused, for the skip of a test that makes files immutable.

The skip used to say "not supported on this file system" while the usual cause is the caller:
setting the immutable attribute needs CAP_LINUX_IMMUTABLE (root, and not dropped by a container),
then a file system that has the attribute (ext4, xfs, btrfs do; tmpfs and overlayfs may not).
chattr's own message tells which ("Operation not permitted" vs "Operation not supported").
"""

from __future__ import annotations

import subprocess


def chattr_refused(result: subprocess.CompletedProcess[str]) -> str:
    """The skip reason for a failed `chattr +i` run with capture_output=True, text=True."""
    said = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
    return (
        f"chattr +i refused ({said}): making a file immutable needs CAP_LINUX_IMMUTABLE (root) "
        "and a file system with the immutable attribute"
    )
