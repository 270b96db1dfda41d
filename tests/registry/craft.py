#!/usr/bin/env python3
"""Makes the images umoci cannot: in the OCI layout LAYOUT, from the image
tagged FROM, a new tag NEW that is

    craft.py LAYOUT FROM NEW index PLATFORM...   an image index with one
        manifest per PLATFORM (os/arch[/variant]), each with its config's
        architecture changed (the layers shared)
    craft.py LAYOUT FROM NEW mediatype TYPE      the same manifest with its
        last layer's media type replaced by TYPE

Blobs are written content-addressed, as the layout wants them.
"""

import hashlib
import json
import os
import sys

layout, source, new, kind = sys.argv[1:5]
args = sys.argv[5:]


def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(layout, "blobs", "sha256", digest)
    with open(path, "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def read(desc):
    with open(os.path.join(layout, "blobs", "sha256", desc["digest"].split(":")[1]), "rb") as f:
        return json.load(f)


with open(os.path.join(layout, "index.json")) as f:
    index = json.load(f)
top = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == source)
manifest = read(top)

if kind == "index":
    entries = []
    for platform in args:
        parts = platform.split("/")
        config = read(manifest["config"])
        config["os"], config["architecture"] = parts[0], parts[1]
        if len(parts) > 2:
            config["variant"] = parts[2]
        m = dict(manifest)
        m["config"] = dict(manifest["config"], **blob(json.dumps(config).encode()))
        d = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **blob(json.dumps(m).encode()))
        p = {"os": parts[0], "architecture": parts[1]}
        if len(parts) > 2:
            p["variant"] = parts[2]
        d["platform"] = p
        entries.append(d)
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    desc = dict(mediaType="application/vnd.oci.image.index.v1+json", **blob(json.dumps(doc).encode()))
elif kind == "mediatype":
    m = json.loads(json.dumps(manifest))
    m["layers"][-1]["mediaType"] = args[0]
    desc = dict(mediaType="application/vnd.oci.image.manifest.v1+json", **blob(json.dumps(m).encode()))
else:
    sys.exit("unknown kind " + kind)

desc["annotations"] = {"org.opencontainers.image.ref.name": new}
index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != new]
index["manifests"].append(desc)
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump(index, f)
