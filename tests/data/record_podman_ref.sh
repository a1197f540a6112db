#!/bin/bash
# Re-record the podman ground truth under tests/data/podman-ref/.
# See tests/data/podman-ref/README.md. Needs root, podman, skopeo, python3, attr.
# Usage: tests/data/record_podman_ref.sh   (from anywhere; writes into the repo)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="$HERE/podman-ref"
NAME="localhost/podman-ref:1"
WORK="$(mktemp -d /tmp/podman-ref.XXXXXX)"
cleanup() {
    # the overlay driver bind-mounts ROOT/overlay onto itself (MakePrivate); skopeo may leave it
    awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r | while read -r m; do
        umount "$m" || umount -l "$m" || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

rm -rf "$OUT/image" "$OUT/tar-split" "$OUT/diff-listing" "$OUT/big-data" "$OUT/podman-pull"
mkdir -p "$OUT"

###############################################################################
# Step 1: build a deterministic 3-layer OCI layout with hand-written layer tars.
###############################################################################
python3 - "$OUT/image" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile

out = sys.argv[1]
blobs = os.path.join(out, "blobs", "sha256")
os.makedirs(blobs)

T0 = 1700000000  # base mtime; every entry gets T0 + n so mtimes are traceable


def put_blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d


class Layer:
    def __init__(self, fmt):
        self.buf = io.BytesIO()
        self.tf = tarfile.TarFile(fileobj=self.buf, mode="w", format=fmt,
                                  encoding="utf-8", errors="surrogateescape")
        self.n = 0

    def add(self, name, type=tarfile.REGTYPE, data=b"", mode=0o644, uid=0, gid=0,
            linkname="", devmajor=0, devminor=0, xattrs=None):
        ti = tarfile.TarInfo(name)
        ti.type = type
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        self.n += 1
        ti.mtime = T0 + self.n
        ti.linkname = linkname
        ti.devmajor, ti.devminor = devmajor, devminor
        if xattrs:
            ti.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
        if type == tarfile.REGTYPE:
            ti.size = len(data)
            self.tf.addfile(ti, io.BytesIO(data))
        else:
            self.tf.addfile(ti)

    def dir(self, name, mode=0o755, **kw):
        self.add(name, tarfile.DIRTYPE, mode=mode, **kw)

    def finish(self, trim=False):
        end = self.tf.offset + 2 * tarfile.BLOCKSIZE   # end of the end-of-archive marker
        self.tf.close()                                 # pads to a 10240-byte record
        data = self.buf.getvalue()
        return data[:end] if trim else data


def pseudo_random(n):
    out, h = bytearray(), b"podman-ref"
    while len(out) < n:
        h = hashlib.sha256(h).digest()
        out += h
    return bytes(out[:n])


LONG_DIR = "usr/share/podman-ref/" + "/".join(["a-rather-long-directory-name-%d" % i for i in range(3)])
LONG_FILE = LONG_DIR + "/and-a-long-file-name-to-go-beyond-one-hundred-characters.txt"

# ---- layer 1: base, PAX format, gzip ----------------------------------------
l1 = Layer(tarfile.PAX_FORMAT)          # no "./" root entry in this layer
l1.dir("bin")
l1.add("bin/suid", data=b"#!/bin/sh\necho setuid\n", mode=0o4755)
l1.dir("etc")
l1.add("etc/empty", data=b"", mode=0o644)
l1.add("etc/big.bin", data=pseudo_random(100 * 1024), mode=0o644)
l1.add("etc/hosts", data=b"127.0.0.1 localhost\n", mode=0o644,
       xattrs={"user.comment": "hello xattr"})
l1.add("etc/hard", tarfile.LNKTYPE, linkname="etc/hosts")
l1.add("etc/rel-link", tarfile.SYMTYPE, linkname="big.bin", mode=0o777)
l1.add("etc/abs-link", tarfile.SYMTYPE, linkname="/etc/empty", mode=0o777)
l1.add("etc/to-delete", data=b"deleted in layer 2\n")
l1.dir("home")
l1.dir("home/user", mode=0o700, uid=1000, gid=1000)
l1.add("home/user/owned.txt", data=b"owned by 1000:1000\n", mode=0o640, uid=1000, gid=1000)
l1.dir("var", mode=0o775, uid=0, gid=50)   # unusual: later layers do not restate var/
l1.dir("var/gone")
l1.add("var/gone/inner", data=b"whole dir deleted in layer 2\n")
l1.dir("var/opaque")
l1.add("var/opaque/old1", data=b"old1\n")
l1.add("var/opaque/old2", data=b"old2\n")
l1.dir("var/opaque/sub")
l1.add("var/opaque/sub/old3", data=b"old3\n")
l1.add("opt/synth/deep/file.txt", data=b"parents not in the tar\n")   # parents synthesized
l1.add(LONG_FILE, data=b"long path via PAX\n")                        # parents synthesized too
L1 = l1.finish()

# ---- layer 2: PAX format, uncompressed, no trailing record padding ------------
l2 = Layer(tarfile.PAX_FORMAT)
l2.dir("./", mode=0o700)                              # root entry with unusual mode
l2.dir("etc")
l2.add("etc/.wh.to-delete", uid=2000, gid=2001)       # whiteout of a lower file, odd owner
l2.add("etc/.wh.never-existed")                       # whiteout of nothing
l2.add("var/.wh.gone", uid=2002, gid=2003)            # whiteout of a lower dir; var/ not restated
l2.dir("var/opaque", uid=3000, gid=3001)
l2.add("var/opaque/.wh..wh..opq", uid=4000, gid=4001) # opaque marker, odd owner
l2.add("var/opaque/.wh.old2")                         # whiteout inside same-layer opaque dir
l2.add("var/opaque/new1", data=b"new1\n")
l2.add("home/user/secret", data=b"secret\n", mode=0o600, uid=1000, gid=1000)  # home/, home/user/ not restated
l2.dir("dev")
l2.add("dev/null", tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3)
l2.add("dev/fifo", tarfile.FIFOTYPE, mode=0o640)
L2 = l2.finish(trim=True)   # ends right after the two zero blocks: no record padding

# ---- layer 3: GNU format, gzip -----------------------------------------------
GNU_LONG = "srv/" + "gnu-long-name-" * 8 + "end.txt"
l3 = Layer(tarfile.GNU_FORMAT)
l3.dir("./", mode=0o751, uid=1000, gid=1000)          # root entry, unusual mode and owner
l3.dir("srv", uid=5000, gid=5001)
l3.add(GNU_LONG, data=b"long name via GNU ././@LongLink\n", uid=100000, gid=100001)
l3.add("srv/long-symlink", tarfile.SYMTYPE, linkname=GNU_LONG.split("/", 1)[1], mode=0o777)
l3.add("srv/caf\udce9", data=b"non-UTF-8 file name (latin-1 e-acute)\n")
l3.add("srv/l3file", data=b"hardlinked\n", mode=0o6755)
l3.add("srv/l3hard", tarfile.LNKTYPE, linkname="srv/l3file")
l3.dir("tmp", mode=0o1777)
l3.add("opt/synth/deep/.wh.file.txt")                 # whiteout under lower synthesized dirs
L3 = l3.finish()

layers = [(L1, True), (L2, False), (L3, True)]
diff_ids, descs = [], []
for raw, gz in layers:
    diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
    blob = gzip.compress(raw, compresslevel=9, mtime=0) if gz else raw
    descs.append({
        "mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if gz else ""),
        "digest": put_blob(blob), "size": len(blob)})

config = {
    "created": "2024-01-02T03:04:05Z",
    "architecture": "amd64",
    "os": "linux",
    "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/usr/bin:/bin"]},
    "rootfs": {"type": "layers", "diff_ids": diff_ids},
    "history": [{"created": "2024-01-02T03:04:0%dZ" % i, "created_by": "record_podman_ref.sh layer %d" % (i + 1)}
                for i in range(3)],
}
cfg = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": put_blob(cfg), "size": len(cfg)},
    "layers": descs,
}
man = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
index = {"schemaVersion": 2, "manifests": [{
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "digest": put_blob(man), "size": len(man),
    "annotations": {"org.opencontainers.image.ref.name": "1"}}]}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump(index, f, sort_keys=True, separators=(",", ":"))
with open(os.path.join(out, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
PY

###############################################################################
# Step 2: store it with the overlay driver in private stores.
#   store A (the recorded one): skopeo copy with an explicit name
#   store B (comparison):       podman pull oci:... (podman 4.3 ignores the :1 ref
#                               and names it localhost/<dir>:latest, hence store A)
# podman 4.3.1 and skopeo 1.9.3 on Debian 12 are both built against
# containers/image 5.23.1 and containers/storage 1.43.0 (see Built-Using).
###############################################################################
ROOT="$WORK/root";  RUN="$WORK/run"
ROOT2="$WORK/root2"; RUN2="$WORK/run2"
skopeo copy --quiet "oci:$OUT/image:1" "containers-storage:[overlay@$ROOT+$RUN]$NAME"

cp -a "$OUT/image" "$WORK/podman-ref"
(cd "$WORK" && podman --root "$ROOT2" --runroot "$RUN2" --storage-driver overlay \
    pull -q oci:podman-ref:1 >/dev/null)

###############################################################################
# Step 3: record what the store looks like (before anything else touches it),
# then export the image back out of store A to check the tar-split round trip.
###############################################################################
VERSIONS="$(podman --version) | $(skopeo --version) | $(uname -r) | $(. /etc/os-release; echo "$PRETTY_NAME")"
VERSIONS="$VERSIONS | containers/image $(dpkg-query -W -f='${Version}' golang-github-containers-image 2>/dev/null || echo '?') (podman Built-Using: $(apt-cache show podman 2>/dev/null | sed -n 's/^Built-Using: //p' | tr ',' '\n' | grep -o 'containers-storage (= [^)]*)' | head -1))"

cat > "$WORK/collect.py" <<'PY'
# usage: collect.py IMAGE_DIR OUT_DIR STORE_A STORE_B VERSIONS
import base64, gzip, hashlib, io, json, os, shutil, stat, sys, tarfile

img, out, root, root2, versions = sys.argv[1:6]
T0 = 1700000000


def load(p):
    with open(p) as f:
        return json.load(f)


def mode_type(m):
    for test, name in ((stat.S_ISDIR, "dir"), (stat.S_ISREG, "file"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISCHR, "char"), (stat.S_ISBLK, "block"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket")):
        if test(m):
            return name
    return "unknown"


def xattrs(p):
    return {k: "0x" + os.getxattr(p, k, follow_symlinks=False).hex()
            for k in sorted(os.listxattr(p, follow_symlinks=False))}


def describe(p, rel):
    st = os.lstat(p)
    e = {"path": os.fsdecode(rel)}
    try:
        rel.decode("utf-8")
    except UnicodeDecodeError:
        e["path_b64"] = base64.b64encode(rel).decode()
    t = mode_type(st.st_mode)
    e.update(type=t, mode="%04o" % stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
             size=st.st_size if t in ("file", "symlink") else 0, nlink=st.st_nlink,
             mtime=st.st_mtime_ns // 10**9, mtime_ns=st.st_mtime_ns,
             mtime_is_pull_time=not (T0 <= st.st_mtime < T0 + 1000))
    if t == "symlink":
        e["target"] = os.fsdecode(os.readlink(p))
    if t == "file":
        with open(p, "rb") as f:
            e["sha256"] = hashlib.sha256(f.read()).hexdigest()
    if t in ("char", "block"):
        e["rdev"] = "%d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    e["xattrs"] = xattrs(p)
    return e, (st.st_dev, st.st_ino)


def walk_listing(top):
    """Every path under top (bytes, sorted), top itself as '.'."""
    topb = os.fsencode(top)
    entries, inodes = [], {}
    stack = [b"."]
    rels = []
    while stack:
        rel = stack.pop()
        rels.append(rel)
        p = os.path.join(topb, rel) if rel != b"." else topb
        if os.path.isdir(p) and not os.path.islink(p):
            for n in os.listdir(p):
                stack.append(n if rel == b"." else rel + b"/" + n)
    for rel in sorted(rels, key=lambda r: (r != b".", r)):
        p = topb if rel == b"." else os.path.join(topb, rel)
        e, key = describe(p, rel)
        if e["type"] == "file" and e["nlink"] > 1:
            if key in inodes:
                e["hardlink_of"] = inodes[key]
            else:
                inodes[key] = e["path"]
        entries.append(e)
    return entries


# ---------------------------------------------------------------- input image
index = load(os.path.join(img, "index.json"))
man_digest = index["manifests"][0]["digest"]
blob = lambda d: os.path.join(img, "blobs", "sha256", d.split(":", 1)[1])
manifest = load(blob(man_digest))
config = load(blob(manifest["config"]["digest"]))

layers_json = load(os.path.join(root, "overlay-layers", "layers.json"))
images_json = load(os.path.join(root, "overlay-images", "images.json"))
by_id = {l["id"]: l for l in layers_json}
ovl = os.path.join(root, "overlay")

for sub in ("tar-split", "diff-listing", "big-data", "podman-pull"):
    os.makedirs(os.path.join(out, sub), exist_ok=True)
shutil.copyfile(os.path.join(root, "overlay-layers", "layers.json"), os.path.join(out, "layers.json"))
shutil.copyfile(os.path.join(root, "overlay-images", "images.json"), os.path.join(out, "images.json"))


def derived_link(layer_id):
    return base64.b32encode(hashlib.sha256(layer_id.encode()).digest()).decode()[:26]


def st_info(p):
    st = os.lstat(p)
    return {"type": mode_type(st.st_mode), "mode": "%04o" % stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid}


def tar_header_ids(raw):
    uids, gids, all_uids, all_gids, root_entry = set(), set(), set(), set(), None
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", encoding="utf-8", errors="surrogateescape") as tf:
        for m in tf:
            all_uids.add(m.uid); all_gids.add(m.gid)
            if not os.path.basename(m.name.rstrip("/")).startswith(".wh."):
                uids.add(m.uid); gids.add(m.gid)
            if m.name in ("./", ".", "/"):
                root_entry = {"mode": "%04o" % m.mode, "uid": m.uid, "gid": m.gid, "mtime": m.mtime}
    return sorted(uids), sorted(gids), sorted(all_uids), sorted(all_gids), root_entry


parent = None
layer_facts = []
for i, (desc, diff_id) in enumerate(zip(manifest["layers"], config["rootfs"]["diff_ids"])):
    dhex = diff_id.split(":", 1)[1]
    formula_id = dhex if parent is None else hashlib.sha256((parent + "+" + dhex).encode()).hexdigest()
    with open(blob(desc["digest"]), "rb") as f:
        b = f.read()
    raw = gzip.decompress(b) if desc["mediaType"].endswith("+gzip") else b
    lid = formula_id
    rec = by_id[lid]                       # KeyError here = formula does not hold
    d = os.path.join(ovl, lid)
    link = open(os.path.join(d, "link")).read()
    lower = open(os.path.join(d, "lower")).read() if os.path.exists(os.path.join(d, "lower")) else None
    uids, gids, all_uids, all_gids, root_entry = tar_header_ids(raw)
    fact = {
        "index": i,
        "id": lid,
        "id_formula": "hex(diffID)" if parent is None else "sha256_hex(parent_id + '+' + hex(diffID))",
        "id_matches_formula": lid in by_id,
        "parent": parent,
        "diff_id": diff_id,
        "blob_digest": desc["digest"],
        "blob_size": desc["size"],
        "blob_media_type": desc["mediaType"],
        "uncompressed_size": len(raw),
        "layer_dir_entries": sorted(os.listdir(d)),
        "link": link,
        "link_len": len(link),
        "link_equals_derived_sha256_base32": link == derived_link(lid),
        "lower": lower,
        "has_empty": os.path.isdir(os.path.join(d, "empty")),
        "has_work": os.path.isdir(os.path.join(d, "work")),
        "has_merged": os.path.isdir(os.path.join(d, "merged")),
        "l_symlink_target": os.readlink(os.path.join(ovl, "l", link)),
        "stat": {n: st_info(os.path.join(d, n)) for n in [".", *sorted(os.listdir(d))]},
        "tar_root_entry": root_entry,
        "uidset_expected_from_headers_without_wh": uids,
        "gidset_expected_from_headers_without_wh": gids,
        "uids_of_all_headers": all_uids,
        "gids_of_all_headers": all_gids,
        "layers_json_uidset": rec.get("uidset"),
        "layers_json_gidset": rec.get("gidset"),
        "layers_json_keys_in_order": list(rec.keys()),
        "tar_split": "tar-split/%s.tar-split.gz" % lid,
        "diff_listing": "diff-listing/%s.json" % lid,
    }
    layer_facts.append(fact)
    shutil.copyfile(os.path.join(root, "overlay-layers", lid + ".tar-split.gz"),
                    os.path.join(out, "tar-split", lid + ".tar-split.gz"))
    with open(os.path.join(out, "diff-listing", lid + ".json"), "w") as f:
        json.dump(walk_listing(os.path.join(d, "diff")), f, indent=1, sort_keys=True)
        f.write("\n")
    parent = lid

# ---------------------------------------------------------------- image record
image_id = manifest["config"]["digest"].split(":", 1)[1]
imgrec = [r for r in images_json if r["id"] == image_id][0]
imgdir = os.path.join(root, "overlay-images", image_id)
files = sorted(os.listdir(imgdir))
for n in files:
    shutil.copyfile(os.path.join(imgdir, n), os.path.join(out, "big-data", n))


def bigdata_file_name(key):
    if key and all(c in ".0123456789abcdefghijklmnopqrstuvwxyz" for c in key):
        return key
    return "=" + base64.b64encode(key.encode()).decode()


# ---------------------------------------------------------------- store tree (outside diff/)
tree = []
for dp, dns, fns in os.walk(root):
    rel = os.path.relpath(dp, root)
    if rel.endswith("/diff") or "/diff/" in rel or rel.startswith("libpod"):
        dns[:] = []
    for n in sorted(dns + fns):
        p = os.path.join(dp, n)
        r = os.path.normpath(os.path.join(rel, n))
        info = st_info(p)
        info["path"] = r
        if info["type"] == "file":
            info["size"] = os.lstat(p).st_size
        if info["type"] == "symlink":
            info["target"] = os.readlink(p)
        tree.append(info)
    dns.sort()
tree.sort(key=lambda e: e["path"])

# ---------------------------------------------------------------- store B (podman pull)
l2 = load(os.path.join(root2, "overlay-layers", "layers.json"))
i2 = load(os.path.join(root2, "overlay-images", "images.json"))
for n in ("layers.json", "images.json"):
    src = os.path.join(root2, "overlay-layers" if n == "layers.json" else "overlay-images", n)
    shutil.copyfile(src, os.path.join(out, "podman-pull", n))
strip = lambda recs, keys: [{k: v for k, v in r.items() if k not in keys} for r in recs]
links2 = {l["id"]: open(os.path.join(root2, "overlay", l["id"], "link")).read() for l in l2}
ts_same = all(open(os.path.join(root, "overlay-layers", l["id"] + ".tar-split.gz"), "rb").read() ==
              open(os.path.join(root2, "overlay-layers", l["id"] + ".tar-split.gz"), "rb").read() for l in l2)
lst_same = all(walk_listing(os.path.join(root, "overlay", l["id"], "diff")) ==
               walk_listing(os.path.join(root2, "overlay", l["id"], "diff")) for l in l2)
img2 = i2[0]
second = {
    "method": "cd DIR && podman pull oci:podman-ref:1 (DIR/podman-ref = a copy of image/)",
    "names": img2.get("names"),
    "links": links2,
    "links_differ_from_store_a": all(links2[l["id"]] != open(os.path.join(ovl, l["id"], "link")).read() for l in l2),
    "layer_records_equal_ignoring_created": strip(sorted(l2, key=lambda r: r["id"]), {"created"}) ==
                                            strip(sorted(layers_json, key=lambda r: r["id"]), {"created"}),
    "image_record_equal_ignoring_names": strip([img2], {"names", "names-history"}) ==
                                         strip([imgrec], {"names", "names-history"}),
    "big_data_files_equal": sorted(os.listdir(os.path.join(root2, "overlay-images", image_id))) == files,
    "tar_split_gz_bytes_identical": ts_same,
    "diff_listings_identical_except_mtime_of_pull_time_entries": None,
}
# compare listings ignoring pull-time mtimes
def norm(lst):
    return [{k: v for k, v in e.items() if not (e["mtime_is_pull_time"] and k in ("mtime", "mtime_ns"))} for e in lst]
second["diff_listings_identical_except_mtime_of_pull_time_entries"] = all(
    norm(walk_listing(os.path.join(root, "overlay", l["id"], "diff"))) ==
    norm(walk_listing(os.path.join(root2, "overlay", l["id"], "diff"))) for l in l2)

expected = {
    "recorded_with": versions,
    "image": {
        "name": imgrec["names"],
        "id": image_id,
        "id_equals_config_digest_hex": image_id == manifest["config"]["digest"].split(":", 1)[1],
        "manifest_digest": man_digest,
        "manifest_size": index["manifests"][0]["size"],
        "config_digest": manifest["config"]["digest"],
        "config_size": manifest["config"]["size"],
        "config_created": config["created"],
        "top_layer": layer_facts[-1]["id"],
        "images_json_keys_in_order": list(imgrec.keys()),
        "big_data_keys": imgrec["big-data-names"],
        "image_dir_files": files,
        "big_data_file_name_rule_holds": sorted(bigdata_file_name(k) for k in imgrec["big-data-names"]) == files,
        "big_data_file_names_by_key": {k: bigdata_file_name(k) for k in imgrec["big-data-names"]},
    },
    "layers": layer_facts,
    "store_tree_outside_diff": tree,
    "podman_pull_comparison": second,
}
with open(os.path.join(out, "expected.json"), "w") as f:
    json.dump(expected, f, indent=1)
    f.write("\n")
PY

# Round trip: export from store A (uses the tar-split) and compare with the diff_ids.
cat > "$WORK/roundtrip.py" <<'PY'
# usage: roundtrip.py OUT_DIR EXPORTED_OCI_DIR  (adds export_roundtrip to OUT_DIR/expected.json)
import gzip, hashlib, json, os, sys
out, exp = sys.argv[1:3]
load = lambda p: json.load(open(p))
blob = lambda d: os.path.join(exp, "blobs", "sha256", d.split(":", 1)[1])
man = load(blob(load(os.path.join(exp, "index.json"))["manifests"][0]["digest"]))
cfg = load(blob(man["config"]["digest"]))
e = load(os.path.join(out, "expected.json"))
def raw(l):
    b = open(blob(l["digest"]), "rb").read()
    return gzip.decompress(b) if l["mediaType"].endswith("+gzip") else b
got = ["sha256:" + hashlib.sha256(raw(l)).hexdigest() for l in man["layers"]]
e["export_roundtrip"] = {
    "method": "skopeo copy containers-storage:[overlay@ROOT+RUN]NAME oci:DIR:1",
    "exported_layer_media_types": [l["mediaType"] for l in man["layers"]],
    "exported_layer_uncompressed_sha256": got,
    "equals_input_diff_ids": got == [l["diff_id"] for l in e["layers"]],
    "config_digest_unchanged": man["config"]["digest"] == e["image"]["config_digest"],
    "config_diff_ids_unchanged": cfg["rootfs"]["diff_ids"] == [l["diff_id"] for l in e["layers"]],
}
json.dump(e, open(os.path.join(out, "expected.json"), "w"), indent=1)
open(os.path.join(out, "expected.json"), "a").write("\n")
print(json.dumps(e["export_roundtrip"]))
PY

python3 "$WORK/collect.py" "$OUT/image" "$OUT" "$ROOT" "$ROOT2" "$VERSIONS"
skopeo copy --quiet "containers-storage:[overlay@$ROOT+$RUN]$NAME" "oci:$WORK/export:1"
python3 "$WORK/roundtrip.py" "$OUT" "$WORK/export"
echo "recorded podman 4.3 reference into $OUT"

###############################################################################
# Optional: the same with podman 5.x / skopeo 1.18 from a Debian 13 tree, made with
#   debootstrap --variant=minbase --include=podman,skopeo,runc,attr trixie DIR
# and passed as PODMAN5_ROOTFS=DIR. Recorded into podman-ref/podman5/.
# The tree must be a mount point (chrootarchive remounts "/"), hence the bind mount.
###############################################################################
if [ -n "${PODMAN5_ROOTFS:-}" ]; then
    R="$(cd "$PODMAN5_ROOTFS" && pwd)"
    P5="$(mktemp -d "$R/tmp/podman-ref-rec.XXXXXX")"; P5IN="/tmp/$(basename "$P5")"
    trap 'cleanup; rm -rf "$P5"' EXIT
    cp -a "$OUT/image" "$P5/podman-ref"
    cat > "$P5/run.sh" <<EOS
set -e
export PODMAN_IGNORE_CGROUPSV1_WARNING=1
cd $P5IN
skopeo copy --quiet oci:podman-ref:1 "containers-storage:[overlay@$P5IN/root+$P5IN/run]$NAME"
podman --root $P5IN/root2 --runroot $P5IN/run2 --storage-driver overlay pull -q oci:podman-ref:1 >/dev/null
echo "\$(podman --version) | \$(skopeo --version) | \$(uname -r) | \$(. /etc/os-release; echo "\$PRETTY_NAME") | podman Built-Using: \$(dpkg -s podman | sed -n 's/^Built-Using: //p' | tr ',' '\n' | grep -o 'containers-\(image\|storage\) (= [^)]*)' | tr '\n' ' ')" > versions
EOS
    unshare -m --propagation private sh -c "
        mount --bind '$R' '$R' && mount -t proc proc '$R/proc' && mount --rbind /dev '$R/dev' &&
        mount --rbind /sys '$R/sys' && chroot '$R' sh '$P5IN/run.sh'"
    rm -rf "$OUT/podman5"; mkdir -p "$OUT/podman5"
    python3 "$WORK/collect.py" "$OUT/image" "$OUT/podman5" "$P5/root" "$P5/root2" "$(cat "$P5/versions")"
    unshare -m --propagation private sh -c "
        mount --bind '$R' '$R' && mount -t proc proc '$R/proc' && mount --rbind /dev '$R/dev' &&
        mount --rbind /sys '$R/sys' && chroot '$R' skopeo copy --quiet \
        'containers-storage:[overlay@$P5IN/root+$P5IN/run]$NAME' 'oci:$P5IN/export:1'"
    python3 "$WORK/roundtrip.py" "$OUT/podman5" "$P5/export"
    echo "recorded podman 5 reference into $OUT/podman5"
fi
