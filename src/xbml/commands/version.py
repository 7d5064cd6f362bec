"""`python -m xbml version DATASET --path data/raw/DATASET --out results/DATASET/data_version.json`.

Records a dataset folder in DVC: `dvc add` writes its content hash to data/raw/<dataset>.dvc
(git-tracked), its content goes to the DVC cache and the configured remote, so `dvc pull` on a
fresh clone restores it. `dvc add` is the folder's only DVC owner: no dvc.yaml stage lists it.
"""

from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("dataset")
    p.add_argument("--path", required=True, help="the dataset folder (data/raw/<dataset>)")
    p.add_argument("--out", required=True, help="receipt JSON: hash, remote, versions")
    p.add_argument("--remote", default="local", help="DVC remote name")
    p.add_argument("--url", default=None, help="DVC remote URL (folder or any DVC URL) to set for this checkout")
    p.add_argument("--no-push", action="store_true", help="commit to the DVC cache but do not push")
    p.add_argument("--no-dvc", action="store_true", help="record a content hash only (no DVC)")


def run(args) -> int:
    from xbml.workflow.data_version import version_dataset

    receipt = version_dataset(
        args.dataset, args.path, args.out, remote=args.remote, url=args.url,
        push=not args.no_push, use_dvc=not args.no_dvc,
    )
    print(f"{args.dataset}: {receipt['path']} md5 {receipt.get('dvc_md5')} ({receipt['files']} files)")
    return 0
