"""The S3 remote (src/mirror/s3.c) against a real S3 server: Ceph's RADOS
Gateway, one per session (s3server.py). tests/unit/s3_check drives every
operation through the remote's table and checks what each returns; this
file then checks what ended up in the bucket independently, with requests
signed by curl --aws-sigv4."""
import os
import subprocess
import xml.etree.ElementTree as ET

from conftest import PRISMFS, SANITIZER_MARKERS

S3_CHECK = os.path.join(os.path.dirname(PRISMFS), "tests", "unit", "s3_check")
NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def run_check(srv, mode, url, env_extra=None, creds=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(S3_ENDPOINT=srv.endpoint, S3_REGION=srv.region)
    if creds:
        env.update(AWS_ACCESS_KEY_ID=srv.access_key, AWS_SECRET_ACCESS_KEY=srv.secret_key)
    env.update(env_extra or {})
    r = subprocess.run([S3_CHECK, mode, url], capture_output=True, text=True, env=env,
                       timeout=900)
    for m in SANITIZER_MARKERS:
        assert m not in r.stderr, r.stderr
    return r


def list_v2(srv, bucket, prefix, delimiter=None, max_keys=1000):
    """Every page of a listing: (keys, common prefixes, pages)."""
    keys, prefixes, pages, token = [], [], 0, None
    while True:
        q = []
        if token:
            q.append(("continuation-token", token))
        if delimiter:
            q.append(("delimiter", delimiter))
        q += [("list-type", "2"), ("max-keys", str(max_keys)), ("prefix", prefix)]
        from urllib.parse import quote
        qs = "&".join("%s=%s" % (k, quote(v, safe="")) for k, v in q)
        r = srv.curl("%s/%s?%s" % (srv.endpoint, bucket, qs))
        root = ET.fromstring(r.stdout)
        assert root.tag == NS + "ListBucketResult", r.stdout[:500]
        pages += 1
        for c in root.findall(NS + "Contents"):
            keys.append((c.find(NS + "Key").text, int(c.find(NS + "Size").text)))
        for c in root.findall(NS + "CommonPrefixes"):
            prefixes.append(c.find(NS + "Prefix").text)
        if root.find(NS + "IsTruncated").text != "true":
            return keys, prefixes, pages
        token = root.find(NS + "NextContinuationToken").text


def head(srv, bucket, key):
    r = srv.curl("-I", "%s/%s/%s" % (srv.endpoint, bucket, key))
    lines = r.stdout.decode().splitlines()
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


def get(srv, bucket, key):
    return srv.curl("%s/%s/%s" % (srv.endpoint, bucket, key)).stdout


def test_every_operation(s3server, s3bucket):
    r = run_check(s3server, "all", "s3://%s/pfx" % s3bucket,
                  {"PRISMFS_S3_PUT_MAX": str(8 << 20), "PRISMFS_S3_MAX_KEYS": "1000"})
    assert r.returncode == 0 and r.stdout.endswith("all ok\n"), r.stdout + r.stderr
    b = s3bucket

    # the file, its data and its metadata (mode changed by setmeta)
    assert get(s3server, b, "pfx/kept/file") == b"hello s3\n"
    st, h = head(s3server, b, "pfx/kept/file")
    assert st == 200
    assert (h["x-amz-meta-mode"], h["x-amz-meta-uid"], h["x-amz-meta-gid"]) == \
        ("600", "1234", "5678")
    assert h["x-amz-meta-mtime"] == "1700000000.123456789"
    assert get(s3server, b, "pfx/kept/other") == b"v2\n"
    assert head(s3server, b, "pfx/kept/gone")[0] == 404  # the refused If-Match put
    assert head(s3server, b, "pfx/kept/short")[0] == 404  # the failed multipart

    # the empty directory is its marker object
    keys, prefixes, _ = list_v2(s3server, b, "pfx/kept/emptydir/")
    assert keys == [("pfx/kept/emptydir/", 0)] and prefixes == []
    assert head(s3server, b, "pfx/kept/emptydir/")[1]["x-amz-meta-mode"] == "711"
    # an implicit directory given metadata got a marker
    assert head(s3server, b, "pfx/impl/")[1]["x-amz-meta-mode"] == "711"

    # the moved tree: nothing left at the source, every key at the target
    assert list_v2(s3server, b, "pfx/t/")[0] == []
    keys, _, _ = list_v2(s3server, b, "pfx/kept/tree/")
    assert sorted(k for k, _ in keys) == ["pfx/kept/tree/", "pfx/kept/tree/empty/",
                                          "pfx/kept/tree/sub/", "pfx/kept/tree/sub/x",
                                          "pfx/kept/tree/y"]
    assert get(s3server, b, "pfx/kept/tree/sub/x") == b"x in sub\n"
    assert head(s3server, b, "pfx/m1")[0] == 404 and head(s3server, b, "pfx/m2")[0] == 404

    # names that need escaping kept byte for byte
    keys, _, _ = list_v2(s3server, b, "pfx/kept/odd names/")
    assert sorted(k for k, _ in keys) == sorted(
        "pfx/kept/odd names/" + n for n in
        ["", "sp ace", "plus+sign", "per%25cent%", "\u00fcn\u00efcode", "a=b&c;d",
         "t~i'l(d)e!*", "q?uestion#hash"])

    # 100 MiB, stored as a multipart object (its etag says the parts)
    st, h = head(s3server, b, "pfx/kept/big")
    assert st == 200 and int(h["content-length"]) == 100 << 20
    assert h["etag"].strip('"').endswith("-7")  # 16 MiB parts

    # 2,500 keys need three pages of 1,000
    keys, prefixes, pages = list_v2(s3server, b, "pfx/many/", "/", 1000)
    assert pages == 3 and len(keys) == 2500 and prefixes == ["pfx/many/zdir/"]

    # no multipart upload left behind (the refused ones were checked first,
    # the failed one aborted)
    r = s3server.curl("%s/%s?uploads=" % (s3server.endpoint, b))
    root = ET.fromstring(r.stdout)
    assert root.findall(NS + "Upload") == [], r.stdout[:500]

    # nothing outside the prefix
    keys, prefixes, _ = list_v2(s3server, b, "", "/")
    assert keys == [] and prefixes == ["pfx/"]


def test_credentials_file(s3server, s3bucket, tmp_path):
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        "[default]\naws_access_key_id = NOTAKEY\naws_secret_access_key = nothing\n\n"
        "# the right ones\n[prismfs]\naws_access_key_id = %s\n"
        "aws_secret_access_key=%s\n" % (s3server.access_key, s3server.secret_key))
    url = "s3://%s/c" % s3bucket
    env = {"HOME": str(tmp_path), "AWS_PROFILE": "prismfs"}
    r = run_check(s3server, "creds", url, env, creds=False)
    assert r.returncode == 0 and "ok credentials file" in r.stdout, r.stdout + r.stderr
    assert get(s3server, s3bucket, "c/creds") == b"signed\n"

    # the default profile's keys are refused by the server: a clear error
    r = run_check(s3server, "open", url, {"HOME": str(tmp_path)}, creds=False)
    assert r.returncode == 1 and "HTTP 403" in r.stdout, r.stdout + r.stderr
    # a profile that is not in the file
    r = run_check(s3server, "open", url, {"HOME": str(tmp_path), "AWS_PROFILE": "nope"},
                  creds=False)
    assert r.returncode == 1 and "profile [nope]" in r.stdout, r.stdout + r.stderr
    # no file at all
    r = run_check(s3server, "open", url, {"HOME": str(tmp_path / "none")}, creds=False)
    assert r.returncode == 1 and "No such file" in r.stdout, r.stdout + r.stderr


def test_pages(s3server, s3bucket):
    """Listing and moving a directory of more keys than a page (5)."""
    r = run_check(s3server, "pages", "s3://%s" % s3bucket, {"PRISMFS_S3_MAX_KEYS": "5"})
    assert r.returncode == 0 and r.stdout.endswith("all ok\n"), r.stdout + r.stderr
    assert list_v2(s3server, s3bucket, "pg/")[0] == []
    keys, _, _ = list_v2(s3server, s3bucket, "pg2/")
    want = ["pg2/", "pg2/sub/"] + ["pg2/%s%02d" % ("sub/" if i % 2 else "", i)
                                    for i in range(23)]
    assert sorted(k for k, _ in keys) == sorted(want)
