#!/usr/bin/env python3
"""Merge a sharded safetensors checkpoint into one model.safetensors.

    python3 tools/merge_safetensors.py MODEL_DIR

Reads model.safetensors.index.json and its shards, writes model.safetensors
with every tensor (same names, dtypes, shapes and bytes; tensors sorted by
name, each 8-byte aligned) and removes the shards and the index. Standard
library only. Used for models/baton-tiny, whose training run writes shards
small enough to leave the GPU machine.
"""

import json
import os
import struct
import sys


def read_shard(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", None)
    return header, data, meta


def main():
    d = sys.argv[1]
    index_path = os.path.join(d, "model.safetensors.index.json")
    with open(index_path) as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    metadata = {"format": "pt"}
    for shard in sorted(set(weight_map.values())):
        header, data, meta = read_shard(os.path.join(d, shard))
        if meta:
            metadata.update(meta)
        for name, info in header.items():
            b, e = info["data_offsets"]
            tensors[name] = (info["dtype"], info["shape"], data[b:e])
    if set(tensors) != set(weight_map):
        sys.exit("shards and index disagree on the tensor names")
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        dtype, shape, blob = tensors[name]
        pad = (-offset) % 8
        blobs.append(b"\0" * pad)
        offset += pad
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * ((-len(raw)) % 8)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)
    for shard in set(weight_map.values()):
        os.remove(os.path.join(d, shard))
    os.remove(index_path)
    print(f"{len(tensors)} tensors, {offset / 1e6:.1f} MB -> {os.path.join(d, 'model.safetensors')}")


if __name__ == "__main__":
    main()
