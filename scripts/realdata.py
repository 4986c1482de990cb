#!/usr/bin/env python3
"""Helpers of scripts/realdata.sh that need a seeded generator or exact byte counts.

  realdata.py select BYTES DIR...      files to archive (DIR absolute), NUL-separated,
                                       relative to /, in name order
  realdata.py edit IN OUT COUNT SEED   copy IN with COUNT small insertions
  realdata.py random OUT BYTES SEED    pseudo-random bytes

Everything is a function of its arguments (and of the files under DIR), so the same
machine rebuilds the same bytes, and another machine with the same files does too.
"""

import hashlib
import os
import random
import sys

BLOCK = 1 << 20


def select(limit, dirs):
    """Regular files under `dirs`, taken in the order of a hash of their path until
    `limit` bytes, returned in name order.

    A prefix of the sorted list would be one or two packages (here: most of it a Python
    SDK); the hash order samples the whole tree, and a file added or removed elsewhere
    does not change which of the others are taken."""
    files = []
    for top in dirs:
        for root, subdirs, names in os.walk(top):
            subdirs.sort()
            for name in names:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                # Symbolic links and special files carry no bytes worth storing;
                # unreadable files would make tar fail halfway.
                if not os.path.isfile(path) or os.path.islink(path):
                    continue
                if not os.access(path, os.R_OK):
                    continue
                raw = os.fsencode(path)
                key = hashlib.blake2b(raw, digest_size=8).digest()
                # Relative to /, for `tar -C /`: member names without a leading slash.
                files.append((key, raw.lstrip(b"/"), st.st_size, (st.st_dev, st.st_ino)))
    files.sort()
    taken, total, inodes = [], 0, set()
    for _, path, size, inode in files:
        # A second name of a file already taken would be a hard link in the tar, no
        # bytes: skip it, so the tar holds what the count says.
        if inode not in inodes and total + size <= limit:
            taken.append(path)
            total += size
            inodes.add(inode)
    taken.sort()
    out = sys.stdout.buffer
    for path in taken:
        out.write(path + b"\0")
    print(f"selected {len(taken)} of {len(files)} files, {total} bytes", file=sys.stderr)


def edit(src, dst, count, seed):
    """Copy `src` to `dst` with `count` insertions of 1 to 64 bytes at uniformly drawn
    offsets: a new version of the file in which a few hundred chunks change and the rest
    are the same bytes, shifted."""
    size = os.path.getsize(src)
    rng = random.Random(seed)
    inserts = []
    for _ in range(count):
        off = rng.randrange(size + 1)
        inserts.append((off, rng.randbytes(rng.randint(1, 64))))
    inserts.sort()
    pos = 0
    with open(src, "rb") as f, open(dst + ".part", "wb") as g:
        for off, data in inserts:
            while pos < off:
                buf = f.read(min(BLOCK, off - pos))
                g.write(buf)
                pos += len(buf)
            g.write(data)
        while buf := f.read(BLOCK):
            g.write(buf)
    os.replace(dst + ".part", dst)
    added = sum(len(d) for _, d in inserts)
    print(f"{dst}: {count} insertions, {added} bytes added", file=sys.stderr)


def rand(dst, size, seed):
    """`size` pseudo-random bytes: incompressible, no chunk repeated."""
    rng = random.Random(seed)
    left = size
    with open(dst + ".part", "wb") as g:
        while left:
            n = min(BLOCK, left)
            g.write(rng.randbytes(n))
            left -= n
    os.replace(dst + ".part", dst)


def main(argv):
    if len(argv) >= 3 and argv[0] == "select":
        select(int(argv[1]), argv[2:])
    elif len(argv) == 5 and argv[0] == "edit":
        edit(argv[1], argv[2], int(argv[3]), int(argv[4]))
    elif len(argv) == 4 and argv[0] == "random":
        rand(argv[1], int(argv[2]), int(argv[3]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
