"""Test helpers: miniature copies of the published datasets in their real formats, and a local
HTTP server with Range support that can cut a transfer once or answer 404.

Every miniature keeps the real folder names, annotation files and file types, with a few tiny
JPEGs per class, and returns the counts prepare must find (for `expected_counts:`).
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def tiny_jpeg(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(path, format="JPEG")


@dataclass
class Miniature:
    name: str  # registry name
    files: dict[str, Path]  # distributed file name -> file built
    counts: dict[str, int]  # what prepare must count (for expected_counts)
    train_classes: list[int]
    test_classes: list[int]
    extracted: dict[str, Path] = field(default_factory=dict)  # archive name -> the folder it unpacks to


def _tgz(src_dir: Path, names: list[str], out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        for n in names:
            tf.add(src_dir / n, arcname=n)
    return out


def _zip(src_dir: Path, top: str, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((src_dir / top).rglob("*")):
            zf.write(p, p.relative_to(src_dir).as_posix())
    return out


def make_cub(work: Path, per_class: int = 3, train_classes: int = 6) -> Miniature:
    """CUB_200_2011.tgz: CUB_200_2011/{images/NNN.Name/*.jpg, images.txt, image_class_labels.txt, ...}."""
    src = work / "cub_src"
    base = src / "CUB_200_2011"
    train, test = list(range(1, train_classes + 1)), [101, 102, 150, 200]
    images, labels, split = [], [], []
    image_id = 0
    for c in train + test:
        folder = f"{c:03d}.Bird_Species_{c}"
        for k in range(per_class):
            image_id += 1
            rel = f"{folder}/Bird_Species_{c}_{k:04d}_{image_id}.jpg"
            tiny_jpeg(base / "images" / rel, image_id)
            images.append(f"{image_id} {rel}")
            labels.append(f"{image_id} {c}")
            split.append(f"{image_id} {k % 2}")
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (base / "classes.txt").write_text("".join(f"{c} {c:03d}.Bird_Species_{c}\n" for c in train + test))
    (base / "README").write_text("miniature CUB-200-2011\n")
    (src / "attributes.txt").write_text("1 has_bill_shape::curved\n")
    archive = _tgz(src, ["CUB_200_2011", "attributes.txt"], work / "CUB_200_2011.tgz")
    n = per_class
    return Miniature(
        "cub200",
        {"CUB_200_2011.tgz": archive},
        {
            "train_images": n * len(train),
            "train_classes": len(train),
            "test_images": n * len(test),
            "test_classes": len(test),
        },
        train,
        test,
        {"CUB_200_2011.tgz": base},
    )


def make_cars(work: Path, per_class: int = 3) -> Miniature:
    """car_ims.tgz (car_ims/000001.jpg ...) and cars_annos.mat (struct array `annotations`)."""
    from scipy.io import savemat

    src = work / "cars_src"
    train, test = [1, 2, 3, 4, 5, 98], [99, 100, 196]
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    rows = []
    i = 0
    for c in train + test:
        for k in range(per_class):
            i += 1
            rel = f"car_ims/{i:06d}.jpg"
            tiny_jpeg(src / rel, 1000 + i)
            rows.append((rel, 1, 2, 7, 5, c, k % 2))
    ann = np.zeros((1, len(rows)), dtype=[(f, object) for f in fields])
    for j, (rel, x1, y1, x2, y2, c, t) in enumerate(rows):
        ann[0, j] = (
            rel,
            np.array([[x1]], dtype=np.uint8),
            np.array([[y1]], dtype=np.uint8),
            np.array([[x2]], dtype=np.uint8),
            np.array([[y2]], dtype=np.uint8),
            np.array([[c]], dtype=np.uint8),
            np.array([[t]], dtype=np.uint8),
        )
    class_names = np.array([[f"Car Model {c}" for c in range(1, 197)]], dtype=object)
    mat = work / "cars_annos.mat"
    savemat(mat, {"annotations": ann, "class_names": class_names})
    archive = _tgz(src, ["car_ims"], work / "car_ims.tgz")
    n = per_class
    return Miniature(
        "cars196",
        {"car_ims.tgz": archive, "cars_annos.mat": mat},
        {
            "train_images": n * len(train),
            "train_classes": len(train),
            "test_images": n * len(test),
            "test_classes": len(test),
        },
        train,
        test,
        {"car_ims.tgz": src / "car_ims"},
    )


def make_sop(work: Path) -> Miniature:
    """Stanford_Online_Products.zip: Stanford_Online_Products/{<super>_final/*.JPG, Ebay_*.txt}."""
    src = work / "sop_src"
    base = src / "Stanford_Online_Products"
    supers = {1: "bicycle_final", 2: "cabinet_final", 3: "chair_final"}
    # (class_id, super_class_id, images): classes 1-6 train, 7-10 test, 2-4 images each as in SOP
    train = [(1, 1, 2), (2, 1, 3), (3, 2, 2), (4, 2, 4), (5, 3, 2), (6, 3, 3)]
    test = [(7, 1, 2), (8, 2, 3), (9, 3, 2), (10, 3, 4)]
    header = "image_id class_id super_class_id path\n"
    image_id = 0
    counts = {}
    everything = []
    for part, classes in (("train", train), ("test", test)):
        lines = [header]
        for c, s, n in classes:
            for k in range(n):
                image_id += 1
                rel = f"{supers[s]}/{111085122800 + c}_{k}.JPG"
                tiny_jpeg(base / rel, 2000 + image_id)
                line = f"{image_id} {c} {s} {rel}\n"
                lines.append(line)
                everything.append(line)
        (base / f"Ebay_{part}.txt").write_text("".join(lines))
        counts[f"{part}_images"] = sum(n for _, _, n in classes)
        counts[f"{part}_classes"] = len(classes)
    (base / "Ebay_info.txt").write_text(header + "".join(everything))
    (base / "Ebay_final.txt").write_text(header + "".join(everything))
    archive = _zip(src, "Stanford_Online_Products", work / "Stanford_Online_Products.zip")
    return Miniature(
        "sop",
        {"Stanford_Online_Products.zip": archive},
        counts,
        [c for c, _, _ in train],
        [c for c, _, _ in test],
        {"Stanford_Online_Products.zip": base},
    )


def make_inshop(work: Path) -> Miniature:
    """img.zip (img/WOMEN/Dresses/id_00000002/02_1_front.jpg ...) and list_eval_partition.txt."""
    src = work / "inshop_src"
    # item -> (gender/category, statuses of its images)
    items = {
        2: ("WOMEN/Dresses", ["train", "train", "train"]),
        7: ("WOMEN/Blouses_Shirts", ["train", "train"]),
        12: ("MEN/Denim", ["train", "train", "train", "train"]),
        19: ("MEN/Tees_Tanks", ["train", "train"]),
        23: ("WOMEN/Skirts", ["train", "train", "train"]),
        31: ("WOMEN/Dresses", ["query", "gallery", "gallery"]),
        44: ("MEN/Denim", ["query", "query", "gallery"]),
        58: ("WOMEN/Tees_Tanks", ["query", "gallery"]),
    }
    views = ["front", "side", "back", "full", "additional"]
    rows = []
    for item, (category, statuses) in items.items():
        for k, status in enumerate(statuses):
            rel = f"img/{category}/id_{item:08d}/{k + 1:02d}_{k + 1}_{views[k]}.jpg"
            tiny_jpeg(src / rel, 3000 + item * 10 + k)
            rows.append((rel, f"id_{item:08d}", status))
    text = f"{len(rows)}\nimage_name item_id evaluation_status\n"
    text += "".join(f"{r:<60}{i} {s}\n" for r, i, s in rows)
    partition = work / "list_eval_partition.txt"
    partition.write_text(text)
    archive = _zip(src, "img", work / "img.zip")
    statuses = [r[2] for r in rows]
    train_items = [i for i, (_, st) in items.items() if st[0] == "train"]
    test_items = [i for i, (_, st) in items.items() if st[0] != "train"]
    return Miniature(
        "inshop",
        {"img.zip": archive, "list_eval_partition.txt": partition},
        {
            "train_images": statuses.count("train"),
            "train_classes": len(train_items),
            "query_images": statuses.count("query"),
            "gallery_images": statuses.count("gallery"),
            "test_classes": len(test_items),
        },
        train_items,
        test_items,
        {"img.zip": src / "img"},
    )


BUILDERS = {"cub200": make_cub, "cars196": make_cars, "sop": make_sop, "inshop": make_inshop}


# ---- a local HTTP server with Range support ---------------------------------------------------

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class FileServer:
    """Serves registered bytes on 127.0.0.1; records (path, Range header) of every GET.

    `cut_once[path] = n`: the next full response of `path` sends n bytes and drops the connection.
    `missing`: paths answered with 404. `ignore_range`: answer 200 with the whole body even to a Range.
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.missing: set[str] = set()
        self.cut_once: dict[str, int] = {}
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                range_header = self.headers.get("Range")
                with server._lock:
                    server.requests.append((path, range_header))
                    cut = server.cut_once.pop(path, None)
                body = server.files.get(path)
                if body is None or path in server.missing:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                start, end = 0, len(body) - 1
                m = _RANGE.match(range_header or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if m.group(2):
                        end = min(int(m.group(2)), end)
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
                else:
                    self.send_response(200)
                    self.send_header("Accept-Ranges", "bytes")
                chunk = body[start : end + 1]
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if cut is not None:
                    self.wfile.write(chunk[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def add(self, path: str, data: bytes | Path) -> str:
        self.files[path] = Path(data).read_bytes() if isinstance(data, Path) else bytes(data)
        return self.url(path)

    def gets(self, path: str | None = None) -> list[tuple[str, str | None]]:
        with self._lock:
            return [r for r in self.requests if path is None or r[0] == path]

    def __enter__(self) -> "FileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                tf.addfile(info)
    return buf.getvalue()
